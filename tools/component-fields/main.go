// Command component-fields prints the field table of a Kubernetes
// component-config Go types file (k8s.io/kubelet config/v1beta1/types.go,
// k8s.io/kube-proxy config/v1alpha1/types.go) in the form
// src/config/component_fields.txt keeps: one line per field,
// "Kind<TAB>path<TAB>type", where a list item is "path[]" and a map value
// "path{}". Types: string bool int float duration object list map any.
//
//	go run ./tools/component-fields KIND types.go
//
// Only Go's standard library: it reads the declarations, it does not
// compile against the Kubernetes modules.
package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"strings"
)

var structs = map[string]*ast.StructType{}

// Types from other packages, by their spelling in the file.
var external = map[string]string{
	"metav1.Duration": "duration",
	"metav1.Time":     "string",
	"v1.ResourceList": "map:string",
	// component-base types: checked as objects, fields not listed here
	"logsapi.LoggingConfiguration":                              "any",
	"tracingapi.TracingConfiguration":                           "any",
	"v1.NodeConfigSource":                                       "any",
	"componentbaseconfigv1alpha1.ClientConnectionConfiguration": "clientconnection",
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: component-fields KIND types.go")
		os.Exit(2)
	}
	kind, file := os.Args[1], os.Args[2]
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok {
			continue
		}
		for _, s := range g.Specs {
			if t, ok := s.(*ast.TypeSpec); ok {
				if st, ok := t.Type.(*ast.StructType); ok {
					structs[t.Name.Name] = st
				}
			}
		}
	}
	// Named non-struct types (string enums, ints) by their underlying type.
	named := map[string]ast.Expr{}
	for _, d := range f.Decls {
		if g, ok := d.(*ast.GenDecl); ok {
			for _, s := range g.Specs {
				if t, ok := s.(*ast.TypeSpec); ok {
					if _, isStruct := t.Type.(*ast.StructType); !isStruct {
						named[t.Name.Name] = t.Type
					}
				}
			}
		}
	}
	st, ok := structs[kind]
	if !ok {
		fmt.Fprintf(os.Stderr, "no struct %s in %s\n", kind, file)
		os.Exit(1)
	}
	walk(kind, "", st, named)
}

func emit(kind, path, typ string) { fmt.Printf("%s\t%s\t%s\n", kind, path, typ) }

func walk(kind, prefix string, st *ast.StructType, named map[string]ast.Expr) {
	for _, fld := range st.Fields.List {
		tag := ""
		if fld.Tag != nil {
			tag = reflect.StructTag(strings.Trim(fld.Tag.Value, "`")).Get("json")
		}
		name := strings.Split(tag, ",")[0]
		if strings.Contains(tag, "inline") {
			if sel, ok := fld.Type.(*ast.SelectorExpr); ok && sel.Sel.Name == "TypeMeta" {
				emit(kind, prefix+"apiVersion", "string")
				emit(kind, prefix+"kind", "string")
			}
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		typ(kind, prefix+name, fld.Type, named)
	}
}

func typ(kind, path string, e ast.Expr, named map[string]ast.Expr) {
	switch t := e.(type) {
	case *ast.StarExpr:
		typ(kind, path, t.X, named)
	case *ast.ArrayType:
		emit(kind, path, "list")
		typ(kind, path+"[]", t.Elt, named)
	case *ast.MapType:
		emit(kind, path, "map")
		typ(kind, path+"{}", t.Value, named)
	case *ast.SelectorExpr:
		full := t.X.(*ast.Ident).Name + "." + t.Sel.Name
		switch ext := external[full]; {
		case full == "v1.Taint":
			emit(kind, path, "object")
			for _, f := range []string{"key", "value", "effect", "timeAdded"} {
				emit(kind, path+"."+f, "string")
			}
		case ext == "clientconnection":
			emit(kind, path, "object")
			emit(kind, path+".kubeconfig", "string")
			emit(kind, path+".acceptContentTypes", "string")
			emit(kind, path+".contentType", "string")
			emit(kind, path+".qps", "float")
			emit(kind, path+".burst", "int")
		case strings.HasPrefix(ext, "map:"):
			emit(kind, path, "map")
			emit(kind, path+"{}", strings.TrimPrefix(ext, "map:"))
		case ext != "":
			emit(kind, path, ext)
		default:
			fmt.Fprintf(os.Stderr, "unknown external type %s at %s\n", full, path)
			os.Exit(1)
		}
	case *ast.Ident:
		switch t.Name {
		case "string":
			emit(kind, path, "string")
		case "bool":
			emit(kind, path, "bool")
		case "int", "int32", "int64", "uint32", "uint64":
			emit(kind, path, "int")
		case "float32", "float64":
			emit(kind, path, "float")
		default:
			if st, ok := structs[t.Name]; ok {
				emit(kind, path, "object")
				walk(kind, path+".", st, named)
			} else if u, ok := named[t.Name]; ok {
				typ(kind, path, u, named)
			} else {
				fmt.Fprintf(os.Stderr, "unknown type %s at %s\n", t.Name, path)
				os.Exit(1)
			}
		}
	default:
		fmt.Fprintf(os.Stderr, "unhandled type expression at %s\n", path)
		os.Exit(1)
	}
}

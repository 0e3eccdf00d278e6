// tlsserve: an HTTPS server on Go's crypto/tls with the defaults
// kube-apiserver keeps (curve preferences, session tickets on) and client
// certificates verified when presented, for kubeboot's TLS client tests
// (stdlib only).
//
//	tlsserve SERVER_CRT SERVER_KEY CLIENT_CA
//	    Serves on 127.0.0.1:0 and prints "PORT <n>". Every answer is JSON
//	    about the connection that carried the request: the key exchange
//	    group of the server's first ServerHello ("group", as a number),
//	    whether that was a HelloRetryRequest ("hrr"), whether the session
//	    was resumed ("resumed"), the client certificate's common name
//	    ("client"), and the connection's number ("conn", from 1). A path
//	    ending in "/close" answers with "Connection: close". The server
//	    stops when its standard input closes.
//
//	    POSTs (kubeboot's create requests) are answered like an API
//	    server's create, by the metadata.name of the JSON body: 201 with
//	    the object; "big..." 201 with a 256 KiB object written in pieces
//	    (so chunked); "close..." 201 and "Connection: close"; "busy..."
//	    429 with "Retry-After: 0" ("busy1...": 1) the first time, then
//	    201; "hold..."
//	    first waits (up to 1 s) for more bytes to arrive on its connection.
//	    A DELETE answers 204. Every request but "GET /log" is logged:
//	    method, path, name, connection, its time ("at", ms since the
//	    server started), and the bytes read from the
//	    connection (TLS records) when its handler started ("rxStart") and
//	    when it ended, before its answer went out ("rxEnd"). "GET /log"
//	    answers that log.
package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tlsserve:", err)
	os.Exit(2)
}

// hrrRandom is the ServerHello.random of a HelloRetryRequest (RFC 8446 4.1.3).
var hrrRandom = sha256.Sum256([]byte("HelloRetryRequest"))

// conn keeps the first bytes the server writes: its ServerHello.
type conn struct {
	net.Conn
	n    int
	rx   int64 // bytes read, atomic
	mu   sync.Mutex
	sent bytes.Buffer
}

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	atomic.AddInt64(&c.rx, int64(n))
	return n, err
}

// entry is one logged request.
type entry struct {
	Method  string `json:"method"`
	Path    string `json:"path"`
	Name    string `json:"name"`
	Conn    int    `json:"conn"`
	RxStart int64  `json:"rxStart"`
	RxEnd   int64  `json:"rxEnd"`
	// milliseconds since the server started, when the handler started
	At int64 `json:"at"`
}

var start = time.Now()

var (
	logMu  sync.Mutex
	log    []entry
	busied = map[string]bool{}
)

// create answers a POST like an API server's create (see the usage).
func create(w http.ResponseWriter, r *http.Request, c *conn, e *entry) {
	var obj map[string]interface{}
	body, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(body, &obj); err != nil {
		w.WriteHeader(400)
		return
	}
	if md, ok := obj["metadata"].(map[string]interface{}); ok {
		e.Name, _ = md["name"].(string)
	}
	name := e.Name
	if strings.HasPrefix(name, "hold") {
		for i := 0; i < 100 && atomic.LoadInt64(&c.rx) == e.RxStart; i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case strings.HasPrefix(name, "busy"):
		logMu.Lock()
		again := busied[name]
		busied[name] = true
		logMu.Unlock()
		if !again {
			after := "0"
			if strings.HasPrefix(name, "busy1") {
				after = "1"
			}
			w.Header().Set("Retry-After", after)
			w.WriteHeader(429)
			w.Write([]byte(`{"kind":"Status","code":429}`))
			return
		}
	case strings.HasPrefix(name, "close"):
		w.Header().Set("Connection", "close")
	case strings.HasPrefix(name, "big"):
		obj["data"] = map[string]string{"pad": strings.Repeat("x", 256*1024)}
		out, _ := json.Marshal(obj)
		w.WriteHeader(201)
		for len(out) > 0 {
			n := 10000
			if n > len(out) {
				n = len(out)
			}
			w.Write(out[:n])
			w.(http.Flusher).Flush()
			out = out[n:]
		}
		return
	}
	w.WriteHeader(201)
	w.Write(body)
}

func (c *conn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if c.sent.Len() < 4096 {
		c.sent.Write(b)
	}
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// serverHello reads the first handshake record: the key_share group and
// whether it is a HelloRetryRequest. group 0 when it cannot be read.
func (c *conn) serverHello() (group uint16, hrr bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.sent.Bytes()
	// record header (5), handshake type 2 and length (4), version (2)
	if len(b) < 5+4+2+32+1 || b[0] != 22 || b[5] != 2 {
		return 0, false
	}
	p := b[5+4+2:]
	hrr = bytes.Equal(p[:32], hrrRandom[:])
	p = p[32:]
	sid := int(p[0])
	if len(p) < 1+sid+2+1+2 {
		return 0, hrr
	}
	p = p[1+sid+2+1:]
	ext := int(p[0])<<8 | int(p[1])
	p = p[2:]
	if len(p) < ext {
		return 0, hrr
	}
	p = p[:ext]
	for len(p) >= 4 {
		typ := int(p[0])<<8 | int(p[1])
		l := int(p[2])<<8 | int(p[3])
		if len(p) < 4+l {
			break
		}
		if typ == 51 && l >= 2 { // key_share
			return uint16(p[4])<<8 | uint16(p[5]), hrr
		}
		p = p[4+l:]
	}
	return 0, hrr
}

type listener struct {
	net.Listener
	mu    sync.Mutex
	n     int
	conns map[string]*conn
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	w := &conn{Conn: c, n: l.n}
	l.conns[c.RemoteAddr().String()] = w
	return w, nil
}

func main() {
	if len(os.Args) != 4 {
		fail(fmt.Errorf("usage: tlsserve SERVER_CRT SERVER_KEY CLIENT_CA"))
	}
	cert, err := tls.LoadX509KeyPair(os.Args[1], os.Args[2])
	if err != nil {
		fail(err)
	}
	pem, err := os.ReadFile(os.Args[3])
	if err != nil {
		fail(err)
	}
	cas := x509.NewCertPool()
	if !cas.AppendCertsFromPEM(pem) {
		fail(fmt.Errorf("%s: no certificates", os.Args[3]))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	l := &listener{Listener: ln, conns: map[string]*conn{}}
	srv := &http.Server{
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.VerifyClientCertIfGiven,
			ClientCAs:    cas,
			MinVersion:   tls.VersionTLS12,
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			l.mu.Lock()
			c := l.conns[r.RemoteAddr]
			l.mu.Unlock()
			if r.Method == "GET" && r.URL.Path == "/log" {
				logMu.Lock()
				out, _ := json.Marshal(log)
				logMu.Unlock()
				w.Write(out)
				return
			}
			e := entry{Method: r.Method, Path: r.URL.Path, Conn: c.n, RxStart: atomic.LoadInt64(&c.rx),
				At: time.Since(start).Milliseconds()}
			defer func() {
				e.RxEnd = atomic.LoadInt64(&c.rx)
				logMu.Lock()
				log = append(log, e)
				logMu.Unlock()
			}()
			switch r.Method {
			case "POST":
				create(w, r, c, &e)
				return
			case "DELETE":
				w.WriteHeader(204)
				return
			}
			group, hrr := c.serverHello()
			client := ""
			if len(r.TLS.PeerCertificates) > 0 {
				client = r.TLS.PeerCertificates[0].Subject.CommonName
			}
			if strings.HasSuffix(r.URL.Path, "/close") {
				w.Header().Set("Connection", "close")
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]interface{}{
				"group":   group,
				"hrr":     hrr,
				"resumed": r.TLS.DidResume,
				"client":  client,
				"conn":    c.n,
			})
		}),
	}
	fmt.Printf("PORT %d\n", ln.Addr().(*net.TCPAddr).Port)
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	if err := srv.ServeTLS(l, "", ""); err != nil {
		fail(err)
	}
}

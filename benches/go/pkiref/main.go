// pkiref: the Go reference for benches/render.rs. It makes the keys and
// certificates of the same 16-key control-plane tree kubeboot renders
// (3 CAs, 7 leaves, sa.key/sa.pub, 5 kubeconfigs), ECDSA P-256, with Go's
// standard library only (crypto/ecdsa, crypto/x509, encoding/pem), the
// way kubeadm's pkiutil does, and writes each file with an fsync (or
// without, with -nofsync). It does what kubeadm pays at least for the
// tree: no config parsing, no static pods, no kubelet files.
//
//	pkiref -dir DIR [-nofsync]
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"fmt"
	"math"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

var (
	dir     = flag.String("dir", "", "output directory (created)")
	noFsync = flag.Bool("nofsync", false, "write without fsync")
	now     = time.Now()
)

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "pkiref:", err)
		os.Exit(1)
	}
}

func write(rel string, data []byte, mode os.FileMode) {
	p := filepath.Join(*dir, rel)
	must(os.MkdirAll(filepath.Dir(p), 0o755))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	must(err)
	_, err = f.Write(data)
	must(err)
	if !*noFsync {
		must(f.Sync())
	}
	must(f.Close())
}

func newKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	return k
}

func keyPEM(k *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalECPrivateKey(k)
	must(err)
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).SetInt64(math.MaxInt64-1))
	must(err)
	return n.Add(n, big.NewInt(1))
}

func selfSigned(cn string) ca {
	k := newKey()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		DNSNames:              []string{cn},
		NotBefore:             now.Add(-5 * time.Minute).UTC(),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour).UTC(),
		KeyUsage:              x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	must(err)
	c, err := x509.ParseCertificate(der)
	must(err)
	return ca{c, k}
}

func leaf(parent ca, cn string, orgs []string, usages []x509.ExtKeyUsage, dns []string, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
	k := newKey()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn, Organization: orgs},
		DNSNames:              dns,
		IPAddresses:           ips,
		NotBefore:             now.Add(-5 * time.Minute).UTC(),
		NotAfter:              now.Add(365 * 24 * time.Hour).UTC(),
		KeyUsage:              x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           usages,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.cert, k.Public(), parent.key)
	must(err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), k
}

func caFiles(stem string, c ca) {
	write("pki/"+stem+".key", keyPEM(c.key), 0o600)
	write("pki/"+stem+".crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw}), 0o644)
}

func leafFiles(stem string, parent ca, cn string, orgs []string, usages []x509.ExtKeyUsage, dns []string, ips []net.IP) {
	crt, k := leaf(parent, cn, orgs, usages, dns, ips)
	write("pki/"+stem+".key", keyPEM(k), 0o600)
	write("pki/"+stem+".crt", crt, 0o644)
}

func main() {
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "usage: pkiref -dir DIR [-nofsync]")
		os.Exit(2)
	}
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	adv := net.ParseIP("10.0.0.10")
	local := []string{"cp-1", "localhost"}
	localIPs := []net.IP{adv, net.ParseIP("127.0.0.1"), net.ParseIP("::1")}

	root := selfSigned("kubernetes")
	caFiles("ca", root)
	leafFiles("apiserver", root, "kube-apiserver", nil, server,
		[]string{"cp-1", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		[]net.IP{net.ParseIP("10.96.0.1"), adv})
	leafFiles("apiserver-kubelet-client", root, "kube-apiserver-kubelet-client", []string{"kubeadm:cluster-admins"}, client, nil, nil)
	fp := selfSigned("front-proxy-ca")
	caFiles("front-proxy-ca", fp)
	leafFiles("front-proxy-client", fp, "front-proxy-client", nil, client, nil, nil)
	etcd := selfSigned("etcd-ca")
	caFiles("etcd/ca", etcd)
	leafFiles("etcd/server", etcd, "cp-1", nil, both, append(local, "etcd.example.test"), localIPs)
	leafFiles("etcd/peer", etcd, "cp-1", nil, both, local, localIPs)
	leafFiles("etcd/healthcheck-client", etcd, "kube-etcd-healthcheck-client", nil, client, nil, nil)
	leafFiles("apiserver-etcd-client", etcd, "kube-apiserver-etcd-client", nil, client, nil, nil)

	sa := newKey()
	write("pki/sa.key", keyPEM(sa), 0o600)
	pub, err := x509.MarshalPKIXPublicKey(sa.Public())
	must(err)
	write("pki/sa.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600)

	caPEM := base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.cert.Raw}))
	for _, kc := range []struct {
		file, user string
		orgs       []string
	}{
		{"admin.conf", "kubernetes-admin", []string{"kubeadm:cluster-admins"}},
		{"super-admin.conf", "kubernetes-super-admin", []string{"system:masters"}},
		{"controller-manager.conf", "system:kube-controller-manager", nil},
		{"scheduler.conf", "system:kube-scheduler", nil},
		{"kubelet.conf", "system:node:cp-1", []string{"system:nodes"}},
	} {
		crt, k := leaf(root, kc.user, kc.orgs, client, nil, nil)
		text := fmt.Sprintf("apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: %s\n    server: https://10.0.0.10:6443\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: %s\n  name: %s@kubernetes\ncurrent-context: %s@kubernetes\nkind: Config\npreferences: {}\nusers:\n- name: %s\n  user:\n    client-certificate-data: %s\n    client-key-data: %s\n",
			caPEM, kc.user, kc.user, kc.user, kc.user,
			base64.StdEncoding.EncodeToString(crt), base64.StdEncoding.EncodeToString(keyPEM(k)))
		write(kc.file, []byte(text), 0o600)
	}
}

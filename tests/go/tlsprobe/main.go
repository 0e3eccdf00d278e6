// tlsprobe: Go crypto/tls checks for kubeboot's PKI tests (stdlib only).
//
//	tlsprobe handshake SERVER_CRT SERVER_KEY CLIENT_CA ROOT_CA SERVER_NAME CLIENT_CRT CLIENT_KEY
//	    Serves TLS on 127.0.0.1 with SERVER_CRT/KEY, requiring client certs
//	    that verify against CLIENT_CA; dials it verifying the server against
//	    ROOT_CA for SERVER_NAME, presenting CLIENT_CRT/KEY. Prints
//	    "ACCEPTED" (exit 0) or "REJECTED: <server-side error>" (exit 3).
//	tlsprobe get URL CA_CRT CLIENT_CRT CLIENT_KEY
//	    HTTPS GET with a client certificate; prints status and body.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func pool(path string) *x509.CertPool {
	pem, err := os.ReadFile(path)
	if err != nil {
		fail(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		fail(fmt.Errorf("%s: no certificates", path))
	}
	return p
}

func pair(crt, key string) tls.Certificate {
	c, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		fail(err)
	}
	return c
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tlsprobe:", err)
	os.Exit(2)
}

func handshake(a []string) {
	server := &tls.Config{
		Certificates: []tls.Certificate{pair(a[0], a[1])},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool(a[2]),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	result := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			result <- err
			return
		}
		tc := tls.Server(conn, server)
		tc.SetDeadline(time.Now().Add(20 * time.Second))
		err = tc.Handshake()
		if err == nil {
			_, err = tc.Write([]byte("ok\n"))
		}
		result <- err
		tc.Close()
	}()
	client := &tls.Config{
		RootCAs:      pool(a[3]),
		ServerName:   a[4],
		Certificates: []tls.Certificate{pair(a[5], a[6])},
	}
	conn, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err != nil {
		// the client refused the server certificate
		fmt.Println("CLIENT-REJECTED:", err)
		os.Exit(4)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 3)
	io.ReadFull(conn, buf)
	conn.Close()
	if err := <-result; err != nil {
		fmt.Println("REJECTED:", err)
		os.Exit(3)
	}
	fmt.Println("ACCEPTED")
}

func get(a []string) {
	c := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs:      pool(a[1]),
			Certificates: []tls.Certificate{pair(a[2], a[3])},
		}},
	}
	resp, err := c.Get(a[0])
	if err != nil {
		fmt.Println("ERROR:", err)
		os.Exit(3)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("%d %s\n", resp.StatusCode, body)
}

func main() {
	if len(os.Args) < 2 {
		fail(fmt.Errorf("usage: tlsprobe handshake|get ..."))
	}
	switch args := os.Args[2:]; os.Args[1] {
	case "handshake":
		if len(args) != 7 {
			fail(fmt.Errorf("handshake needs 7 arguments"))
		}
		handshake(args)
	case "get":
		if len(args) != 4 {
			fail(fmt.Errorf("get needs 4 arguments"))
		}
		get(args)
	default:
		fail(fmt.Errorf("unknown command %q", os.Args[1]))
	}
}

// kubeadmcompat: kubeadm's two wire formats that kubeboot must match,
// written for kubeboot's tests from kubeadm's and the bootstrap signer's
// behaviour (stdlib only, so the tests build it offline):
//
//	kubeadmcompat encrypt   stdin → stdout   the kubeadm-certs value format of
//	kubeadmcompat decrypt   stdin → stdout   cmd/kubeadm/app/util/crypto (AES-GCM,
//	                                         a fresh 12-byte nonce, then
//	                                         Seal(nonce, nonce, data, nil), i.e.
//	                                         nonce ‖ ciphertext ‖ tag)
//	kubeadmcompat sign      stdin → stdout   the detached compact JWS that the
//	                                         bootstrap signer puts in cluster-info
//	                                         (k8s.io/cluster-bootstrap/token/jws:
//	                                         HS256 with the token secret as key,
//	                                         protected header {"alg":"HS256","kid":ID},
//	                                         payload elided: "header..signature")
//
// The AES key (64 hex digits) is read from KUBEADM_CERT_KEY, the token from
// KUBEADM_TOKEN_ID and KUBEADM_TOKEN_SECRET (never argv).
package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kubeadmcompat:", err)
	os.Exit(1)
}

func gcm() cipher.AEAD {
	key, err := hex.DecodeString(os.Getenv("KUBEADM_CERT_KEY"))
	if err != nil {
		fail(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		fail(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		fail(err)
	}
	return aead
}

func main() {
	if len(os.Args) != 2 {
		fail(errors.New("usage: kubeadmcompat encrypt|decrypt|sign"))
	}
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	var out []byte
	switch os.Args[1] {
	case "encrypt":
		aead := gcm()
		nonce := make([]byte, aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			fail(err)
		}
		out = aead.Seal(nonce, nonce, in, nil)
	case "decrypt":
		aead := gcm()
		n := aead.NonceSize()
		if len(in) < n {
			fail(errors.New("shorter than the nonce"))
		}
		out, err = aead.Open(nil, in[:n], in[n:], nil)
		if err != nil {
			fail(err)
		}
	case "sign":
		header, err := json.Marshal(map[string]string{
			"alg": "HS256",
			"kid": os.Getenv("KUBEADM_TOKEN_ID"),
		})
		if err != nil {
			fail(err)
		}
		enc := base64.RawURLEncoding
		protected := enc.EncodeToString(header)
		mac := hmac.New(sha256.New, []byte(os.Getenv("KUBEADM_TOKEN_SECRET")))
		mac.Write([]byte(protected + "." + enc.EncodeToString(in)))
		out = []byte(protected + ".." + enc.EncodeToString(mac.Sum(nil)))
	default:
		fail(fmt.Errorf("unknown command %q", os.Args[1]))
	}
	if _, err := os.Stdout.Write(out); err != nil {
		fail(err)
	}
}

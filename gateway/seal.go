package gateway

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
)

// sealAAD binds sealed values to their one use.
var sealAAD = []byte("llmgate id_token_hint")

// seal encrypts the ID token kept for RP-initiated logout, so that a
// leaked Redis dump holds no identity-provider token that could be
// replayed where such tokens are accepted.
func (s *Server) seal(plain string) string {
	if plain == "" {
		return ""
	}
	aead := s.aead()
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, []byte(plain), sealAAD))
}

// open reverses seal.
func (s *Server) open(sealed string) (string, error) {
	if sealed == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(sealed)
	aead := s.aead()
	if err != nil || len(b) < aead.NonceSize() {
		return "", errors.New("sealed value is malformed")
	}
	plain, err := aead.Open(nil, b[:aead.NonceSize()], b[aead.NonceSize():], sealAAD)
	if err != nil {
		return "", errors.New("sealed value does not open with this LLMGATE_SECRET")
	}
	return string(plain), nil
}

func (s *Server) aead() cipher.AEAD {
	block, err := aes.NewCipher(s.sealKey)
	if err != nil {
		panic(err) // a 32-byte key always makes a cipher
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}

package users

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// hkdfInfo separates the refresh-token key from every other key derived
// from LLMGATE_SECRET.
const hkdfInfo = "llmgate refresh tokens v1"

// sealVersion is the first byte of every sealed token.
const sealVersion = 1

// errUnseal is returned when a sealed token does not open: another secret,
// another person's token, or damaged data.
var errUnseal = errors.New("refresh token does not decrypt with LLMGATE_SECRET (wrong secret, or damaged)")

// sealer encrypts refresh tokens under the key derived from the secret.
type sealer struct{ aead cipher.AEAD }

func newSealer(secret []byte) (*sealer, error) {
	key, err := hkdf.Key(sha256.New, secret, nil, hkdfInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("derive refresh-token key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("derive refresh-token key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("derive refresh-token key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// seal encrypts token for the person email (lower-cased).
func (s *sealer) seal(email, token string) ([]byte, error) {
	ns := s.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(token)+s.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("seal refresh token: %w", err)
	}
	return s.aead.Seal(out, out[1:], []byte(token), []byte(email)), nil
}

// open decrypts what seal made for email. It returns an error wrapping
// errUnseal when the data does not authenticate.
func (s *sealer) open(email string, sealed []byte) (string, error) {
	ns := s.aead.NonceSize()
	if len(sealed) < 1+ns+s.aead.Overhead() || sealed[0] != sealVersion {
		return "", fmt.Errorf("open refresh token: unknown format: %w", errUnseal)
	}
	plain, err := s.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], []byte(email))
	if err != nil {
		return "", fmt.Errorf("open refresh token: %w", errUnseal)
	}
	return string(plain), nil
}

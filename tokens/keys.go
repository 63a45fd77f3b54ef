package tokens

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// hkdfInfo separates the key-encryption key from every other key derived
// from LLMGATE_SECRET.
const hkdfInfo = "llmgate token signing keys v1"

// keyRecord is a signing key as stored in Redis: the private key sealed
// with AES-256-GCM, the metadata in the clear and bound to the ciphertext
// as additional data.
type keyRecord struct {
	Gen         int       `json:"gen"`
	Kid         string    `json:"kid"`
	Alg         string    `json:"alg"`
	CreatedAt   time.Time `json:"created_at"`
	ActivatesAt time.Time `json:"activates_at"`
	Nonce       []byte    `json:"nonce"`
	Sealed      []byte    `json:"sealed"` // PKCS #8 private key, encrypted
}

func (r *keyRecord) aad() []byte {
	return []byte("llmgate signing key|" + strconv.Itoa(r.Gen) + "|" + r.Kid + "|" + r.Alg)
}

// sealer encrypts and decrypts signing keys under the key derived from the secret.
type sealer struct{ aead cipher.AEAD }

func newSealer(secret []byte) (*sealer, error) {
	kek, err := hkdf.Key(sha256.New, secret, nil, hkdfInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("derive key-encryption key: %w", err)
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("derive key-encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("derive key-encryption key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// signingKey is a decrypted key, ready to sign (if current) and verify.
type signingKey struct {
	gen         int
	kid         string
	alg         jwa.SignatureAlgorithm
	activatesAt time.Time
	retireAt    time.Time // zero for the newest key; else next.activatesAt + MaxTTL + Leeway
	priv        jwk.Key   // with kid, alg, use set
	pub         jwk.Key
}

// retired reports whether every token k signed has expired at now.
func (k *signingKey) retired(now time.Time) bool {
	return !k.retireAt.IsZero() && !now.Before(k.retireAt)
}

// newKeyRecord generates a key for alg and seals it.
func (s *sealer) newKeyRecord(gen int, alg string, now, activates time.Time) (*keyRecord, *signingKey, error) {
	var raw crypto.Signer
	var err error
	switch alg {
	case AlgEdDSA:
		_, raw, err = ed25519.GenerateKey(rand.Reader)
	case AlgES256:
		raw, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		err = fmt.Errorf("unsupported algorithm %q", alg)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("generate signing key: %w", err)
	}
	key, err := newSigningKey(raw, alg)
	if err != nil {
		return nil, nil, err
	}
	rec := &keyRecord{Gen: gen, Kid: key.kid, Alg: alg, CreatedAt: now.UTC(), ActivatesAt: activates.UTC()}
	rec.Nonce = make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(rec.Nonce); err != nil {
		return nil, nil, fmt.Errorf("generate signing key: %w", err)
	}
	rec.Sealed = s.aead.Seal(nil, rec.Nonce, der, rec.aad())
	key.gen, key.activatesAt = gen, rec.ActivatesAt
	return rec, key, nil
}

// open decrypts rec. It returns ErrWrongSecret when the ciphertext does not
// authenticate under this secret.
func (s *sealer) open(rec *keyRecord) (*signingKey, error) {
	if len(rec.Nonce) != s.aead.NonceSize() {
		return nil, fmt.Errorf("open signing key %d: bad nonce length", rec.Gen)
	}
	der, err := s.aead.Open(nil, rec.Nonce, rec.Sealed, rec.aad())
	if err != nil {
		return nil, fmt.Errorf("open signing key %d (kid %s): %w", rec.Gen, rec.Kid, ErrWrongSecret)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("open signing key %d: %w", rec.Gen, err)
	}
	raw, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("open signing key %d: unexpected key type %T", rec.Gen, parsed)
	}
	key, err := newSigningKey(raw, rec.Alg)
	if err != nil {
		return nil, err
	}
	if key.kid != rec.Kid {
		return nil, fmt.Errorf("open signing key %d: kid %s does not match the key (%s)", rec.Gen, rec.Kid, key.kid)
	}
	key.gen, key.activatesAt = rec.Gen, rec.ActivatesAt
	return key, nil
}

// newSigningKey wraps raw as JWKs; the kid is the RFC 7638 thumbprint.
func newSigningKey(raw crypto.Signer, alg string) (*signingKey, error) {
	switch k := raw.(type) {
	case ed25519.PrivateKey:
		if alg != AlgEdDSA {
			return nil, fmt.Errorf("signing key: Ed25519 key stored for %s", alg)
		}
	case *ecdsa.PrivateKey:
		if alg != AlgES256 || k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("signing key: ECDSA key stored for %s", alg)
		}
	default:
		return nil, fmt.Errorf("signing key: unsupported key type %T", raw)
	}
	priv, err := jwk.FromRaw(raw)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	pub, err := priv.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(tp)
	var sa jwa.SignatureAlgorithm
	if err := sa.Accept(alg); err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	for _, k := range []jwk.Key{priv, pub} {
		if err := k.Set(jwk.KeyIDKey, kid); err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		if err := k.Set(jwk.AlgorithmKey, sa); err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		if err := k.Set(jwk.KeyUsageKey, jwk.ForSignature); err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
	}
	return &signingKey{kid: kid, alg: sa, priv: priv, pub: pub}, nil
}

// keyring is an immutable view of the signing keys at one moment; a new one
// replaces it (atomically) on every reload.
type keyring struct {
	keys  []*signingKey // by generation, oldest first
	byKid map[string]*signingKey
	// set holds the public keys that were not retired when the ring was
	// built; Verify hands it to jwx as the explicit key set.
	set        jwk.Set
	jwks       []byte
	verifyOpts []jws.VerifyOption
}

// newKeyring builds a ring from keys (any order) as of now.
func (s *Service) newKeyring(keys []*signingKey, now time.Time) (*keyring, error) {
	keys = slices.Clone(keys)
	slices.SortFunc(keys, func(a, b *signingKey) int { return a.gen - b.gen })
	r := &keyring{keys: keys, byKid: make(map[string]*signingKey, len(keys)), set: jwk.NewSet()}
	for i, k := range keys {
		// Keys are shared between rings: copy before setting retireAt.
		kk := *k
		kk.retireAt = time.Time{}
		if i+1 < len(keys) {
			kk.retireAt = keys[i+1].activatesAt.Add(s.cfg.MaxTTL + s.cfg.Leeway)
		}
		keys[i] = &kk
		r.byKid[kk.kid] = &kk
		if kk.retired(now) {
			continue
		}
		if err := r.set.AddKey(kk.pub); err != nil {
			return nil, fmt.Errorf("build key set: %w", err)
		}
	}
	jwks, err := json.Marshal(r.set)
	if err != nil {
		return nil, fmt.Errorf("build key set: %w", err)
	}
	r.jwks = jwks
	r.verifyOpts = []jws.VerifyOption{
		jws.WithKeySet(r.set, jws.WithInferAlgorithmFromKey(false), jws.WithRequireKid(true)),
		jws.WithCompact(),
	}
	return r, nil
}

// signer returns the key new tokens use: the newest one already active.
func (r *keyring) signer(now time.Time) *signingKey {
	for i := len(r.keys) - 1; i >= 0; i-- {
		if !r.keys[i].activatesAt.After(now) {
			return r.keys[i]
		}
	}
	return r.keys[0]
}

// newest returns the key with the highest generation.
func (r *keyring) newest() *signingKey { return r.keys[len(r.keys)-1] }

// p256HalfOrder is (n-1)/2 of P-256: an ECDSA signature whose s exceeds it
// has a twin (r, n-s) that verifies too. Issue writes only the low form and
// Verify refuses the high one, so a token string cannot be altered and stay valid.
var p256HalfOrder = new(big.Int).Rsh(elliptic.P256().Params().N, 1)

// lowS rewrites a raw (r||s) P-256 signature to its low-s form.
func lowS(sig []byte) []byte {
	if len(sig) != 64 {
		return sig
	}
	s := new(big.Int).SetBytes(sig[32:])
	if s.Cmp(p256HalfOrder) <= 0 {
		return sig
	}
	s.Sub(elliptic.P256().Params().N, s)
	out := slices.Clone(sig)
	s.FillBytes(out[32:])
	return out
}

// isHighS reports whether a raw P-256 signature has s > n/2.
func isHighS(sig []byte) bool {
	return len(sig) == 64 && new(big.Int).SetBytes(sig[32:]).Cmp(p256HalfOrder) > 0
}

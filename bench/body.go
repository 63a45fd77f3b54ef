package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
)

// chatBody is a small, realistic chat completion request.
const chatBody = `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},` +
	`{"role":"user","content":"Summarise the following in one sentence: the quick brown fox jumps over the lazy dog, twice."}],` +
	`"temperature":0.2,"max_tokens":128}`

// warm sends n calls to url one after another; each must answer 200.
func warm(ctx context.Context, url string, body []byte, token string, n int) error {
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true}}
	defer c.Transport.(*http.Transport).CloseIdleConnections()
	for range n {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("POST %s: %d %s", url, resp.StatusCode, b)
		}
	}
	return nil
}

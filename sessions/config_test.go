package sessions

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestNewDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Config
		want Config
	}{
		{
			name: "zero",
			want: Config{Prefix: "llmgate:", TTL: 24 * time.Hour, IdleTimeout: 8 * time.Hour, TouchInterval: time.Minute},
		},
		{
			name: "kept",
			in:   Config{Prefix: "x:", TTL: time.Hour, IdleTimeout: 10 * time.Minute, TouchInterval: 10 * time.Second},
			want: Config{Prefix: "x:", TTL: time.Hour, IdleTimeout: 10 * time.Minute, TouchInterval: 10 * time.Second},
		},
		{
			name: "idle above TTL",
			in:   Config{TTL: time.Hour, IdleTimeout: 2 * time.Hour},
			want: Config{Prefix: "llmgate:", TTL: time.Hour, IdleTimeout: time.Hour, TouchInterval: time.Minute},
		},
		{
			name: "touch above half the idle timeout",
			in:   Config{IdleTimeout: time.Minute, TouchInterval: time.Hour},
			want: Config{Prefix: "llmgate:", TTL: 24 * time.Hour, IdleTimeout: time.Minute, TouchInterval: 30 * time.Second},
		},
		{
			name: "negative",
			in:   Config{TTL: -1, IdleTimeout: -1, TouchInterval: -1},
			want: Config{Prefix: "llmgate:", TTL: 24 * time.Hour, IdleTimeout: 8 * time.Hour, TouchInterval: time.Minute},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := New(nil, tt.in).cfg
			if got.Now == nil {
				t.Errorf("New(%+v): Now is nil, want time.Now", tt.in)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(Config{}, "Now")); diff != "" {
				t.Errorf("New(%+v) config (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestValidID(t *testing.T) {
	id, err := newID()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id   string
		want bool
	}{
		{id, true},
		{"", false},
		{id[:len(id)-1], false},
		{id + "A", false},
		{id[:len(id)-1] + "+", false},
		{id[:len(id)-1] + "/", false},
		{id[:len(id)-1] + "=", false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			if got := validID(tt.id); got != tt.want {
				t.Errorf("validID(%q) = %v, want %v", tt.id, got, tt.want)
			}
		})
	}
}

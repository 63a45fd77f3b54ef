package redisconn

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/llmgate/llmgate/internal/redistest"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings, one per problem, in order
	}{
		{"plain URL", Config{URL: "redis://127.0.0.1:6379/0"}, nil},
		{"TLS URL", Config{URL: "rediss://user:pw@redis.example:6380/2"}, nil},
		{"missing", Config{}, []string{"LLMGATE_REDIS_URL is required"}},
		{"bad scheme", Config{URL: "http://redis:6379"}, []string{"LLMGATE_REDIS_URL is not a valid"}},
		{"sentinel without addrs", Config{URL: "redis://x", SentinelMaster: "mymaster"}, []string{"LLMGATE_REDIS_ADDRS is required"}},
		{"both sentinel and cluster", Config{URL: "redis://x", SentinelMaster: "m", Cluster: true, Addrs: []string{"a:1"}}, []string{"exclude each other"}},
		{"addr without port", Config{URL: "redis://x", Cluster: true, Addrs: []string{"node1"}}, []string{`"node1" is not host:port`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := tt.cfg.Validate()
			if len(errs) != len(tt.want) {
				t.Fatalf("Validate() = %v, want %d problems %q", errs, len(tt.want), tt.want)
			}
			for i, e := range errs {
				if !strings.Contains(e.Error(), tt.want[i]) {
					t.Errorf("problem %d = %q, want it to contain %q", i, e, tt.want[i])
				}
			}
		})
	}
}

func TestValidateHidesPassword(t *testing.T) {
	errs := Config{URL: "redis://user:hunter2-secret@host:port-not-a-number/0"}.Validate()
	if len(errs) == 0 {
		t.Fatal("Validate accepted a URL with a non-numeric port")
	}
	for _, e := range errs {
		if strings.Contains(e.Error(), "hunter2-secret") {
			t.Errorf("problem %q shows the password", e)
		}
	}
}

func TestNewShapes(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{URL: "redis://127.0.0.1:6379/3"}, "*redis.Client"},
		{Config{URL: "redis://:pw@x/1", SentinelMaster: "mymaster", Addrs: []string{"s1:26379", "s2:26379"}}, "*redis.Client"},
		{Config{URL: "redis://x", Cluster: true, Addrs: []string{"n1:7000", "n2:7000"}}, "*redis.ClusterClient"},
	}
	for _, tt := range tests {
		c, err := New(tt.cfg)
		if err != nil {
			t.Fatalf("New(%+v): %v", tt.cfg, err)
		}
		got := "?"
		switch c.(type) {
		case *redis.Client:
			got = "*redis.Client"
		case *redis.ClusterClient:
			got = "*redis.ClusterClient"
		}
		if got != tt.want {
			t.Errorf("New(%+v) is %s, want %s", tt.cfg, got, tt.want)
		}
		c.Close()
	}
	if c, _ := New(Config{URL: "redis://127.0.0.1:6379/3", PoolSize: 7}); c.(*redis.Client).Options().PoolSize != 7 || c.(*redis.Client).Options().DB != 3 {
		t.Errorf("PoolSize or DB from the URL not applied: %+v", c.(*redis.Client).Options())
	}
}

func TestVersionProblem(t *testing.T) {
	tests := []struct {
		info    string
		wantErr bool
	}{
		{"# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n", false},
		{"# Server\r\nredis_version:8.2.1\r\n", false},
		{"# Server\r\nredis_version:6.2.14\r\n", true},
		{"# Server\r\nredis_version:5.0.7\r\n", true},
		{"# Server\r\n", false}, // no version: an embedded server
	}
	for _, tt := range tests {
		err := versionProblem(tt.info)
		if (err != nil) != tt.wantErr {
			t.Errorf("versionProblem(%q) = %v, want error %v", tt.info, err, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "needs Redis 7") {
			t.Errorf("versionProblem(%q) = %q, want it to name the minimum", tt.info, err)
		}
	}
}

func TestCheckVersion(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		if err := CheckVersion(t.Context(), s.Client); err != nil {
			t.Errorf("CheckVersion on %s: %v", s.Addr, err)
		}
	})
}

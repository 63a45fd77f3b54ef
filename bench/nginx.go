package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// nginxConf is nginx as a plain reverse proxy doing what bareproxy does:
// one worker (as the Go proxies get one CPU), keep-alive to the upstream,
// the caller's credential swapped for the upstream key, X-Forwarded-*,
// responses unbuffered so SSE events pass at once, request bodies read
// whole first (as llmgate does, to replay them). Run without a master
// process so the harness reads the one worker's CPU and RSS.
const nginxConf = `daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 200000;
error_log {{DIR}}/{{NAME}}.error.log warn;
pid {{DIR}}/{{NAME}}.pid;
events { worker_connections 60000; multi_accept on; }
http {
  access_log off;
  client_body_temp_path {{DIR}}/{{NAME}}-tmp/body;
  proxy_temp_path {{DIR}}/{{NAME}}-tmp/proxy;
  fastcgi_temp_path {{DIR}}/{{NAME}}-tmp/fastcgi;
  uwsgi_temp_path {{DIR}}/{{NAME}}-tmp/uwsgi;
  scgi_temp_path {{DIR}}/{{NAME}}-tmp/scgi;
  client_max_body_size 32m;
  client_body_buffer_size 1m;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  upstream llm { server {{UPSTREAM}}; keepalive 512; keepalive_timeout 4s; keepalive_requests 10000000; }
  server {
    listen {{LISTEN}} backlog=4096;
    location / {
      proxy_pass http://llm;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header Authorization "Bearer {{KEY}}";
      proxy_set_header X-Api-Key "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_buffering off;
      proxy_request_buffering on;
      proxy_read_timeout 1h;
    }
  }
}
`

// nginxPath returns the nginx binary, or "" when it is not installed.
func nginxPath() string {
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	return ""
}

// nginxVersion is `nginx -v`'s answer, e.g. "nginx/1.22.1".
func nginxVersion(bin string) string {
	out, _ := exec.Command(bin, "-v").CombinedOutput()
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: ")
}

// startNginx runs nginx (pinned to cpus) in front of upstreamURL.
func startNginx(ctx context.Context, bin, dir, name, cpus, upstreamURL string) (*proc, error) {
	u, err := url.Parse(upstreamURL)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	conf := strings.NewReplacer("{{DIR}}", dir, "{{NAME}}", name, "{{UPSTREAM}}", u.Host, "{{LISTEN}}", listen, "{{KEY}}", upstreamKey).Replace(nginxConf)
	if err := os.MkdirAll(filepath.Join(dir, name+"-tmp"), 0o755); err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, name+".conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	p, err := start(ctx, dir, name, cpus, nil, false, bin, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, name+".error.log"))
	if err != nil {
		return nil, err
	}
	p.url = "http://" + listen
	if err := waitHTTP(ctx, p.url+"/v1/models", 30*time.Second, p); err != nil {
		p.stop()
		return nil, fmt.Errorf("nginx did not answer: %w (see %s)", err, filepath.Join(dir, name+".error.log"))
	}
	return p, nil
}

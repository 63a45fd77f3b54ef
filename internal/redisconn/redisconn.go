package redisconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config says how to reach Redis. Exactly one shape applies: URL alone; URL
// (for credentials, TLS and database) with SentinelMaster and Addrs; or URL
// with Cluster and Addrs.
type Config struct {
	// URL is a redis:// or rediss:// URL (LLMGATE_REDIS_URL). With Sentinel or
	// Cluster only its user, password, database and scheme (TLS) are used.
	URL string
	// SentinelMaster names the Sentinel master group (LLMGATE_REDIS_SENTINEL_MASTER).
	SentinelMaster string
	// Cluster selects Redis Cluster (LLMGATE_REDIS_CLUSTER).
	Cluster bool
	// Addrs lists Sentinel or Cluster seed addresses, host:port (LLMGATE_REDIS_ADDRS).
	Addrs []string
	// PoolSize caps connections per node; 0 means 10 per CPU.
	PoolSize int
}

// Client timeouts. A gateway must fail fast when Redis is slow so that
// failsafe behaviour, not a hung request, is what callers see.
const (
	dialTimeout  = 2 * time.Second
	readTimeout  = 1 * time.Second
	writeTimeout = 1 * time.Second
	poolTimeout  = 2 * time.Second
	idleTimeout  = 4 * time.Minute
)

// Validate reports every problem with cfg, each naming its variable.
func (cfg Config) Validate() []error {
	var errs []error
	if cfg.URL == "" {
		errs = append(errs, errors.New("LLMGATE_REDIS_URL is required: set it to redis://HOST:6379/0 (or rediss:// for TLS)"))
	} else if _, err := redis.ParseURL(cfg.URL); err != nil {
		errs = append(errs, fmt.Errorf("LLMGATE_REDIS_URL is not a valid redis:// or rediss:// URL: %s", scrub(err.Error())))
	}
	if cfg.SentinelMaster != "" && cfg.Cluster {
		errs = append(errs, errors.New("LLMGATE_REDIS_SENTINEL_MASTER and LLMGATE_REDIS_CLUSTER=true exclude each other: choose one"))
	}
	if (cfg.SentinelMaster != "" || cfg.Cluster) && len(cfg.Addrs) == 0 {
		errs = append(errs, errors.New("LLMGATE_REDIS_ADDRS is required with Sentinel or Cluster: a comma list of host:port"))
	}
	for _, a := range cfg.Addrs {
		if !strings.Contains(a, ":") {
			errs = append(errs, fmt.Errorf("LLMGATE_REDIS_ADDRS: %q is not host:port", a))
		}
	}
	return errs
}

// userinfo matches the credentials part of a URL, even one url.Parse
// cannot read.
var userinfo = regexp.MustCompile(`://[^/?#\s"]*@`)

// scrub keeps credentials in the URL out of error messages.
func scrub(msg string) string {
	return userinfo.ReplaceAllString(msg, "://xxxxx@")
}

// New returns a client for cfg. It does not dial: the first command does, so
// a gateway can start while Redis is still coming up and report it in /readyz.
func New(cfg Config) (redis.UniversalClient, error) {
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	opt, err := redis.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("parse LLMGATE_REDIS_URL: %s", scrub(err.Error()))
	}
	opt.DialTimeout = dialTimeout
	opt.ReadTimeout = readTimeout
	opt.WriteTimeout = writeTimeout
	opt.PoolTimeout = poolTimeout
	opt.ConnMaxIdleTime = idleTimeout
	if cfg.PoolSize > 0 {
		opt.PoolSize = cfg.PoolSize
	}
	switch {
	case cfg.SentinelMaster != "":
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:      cfg.SentinelMaster,
			SentinelAddrs:   cfg.Addrs,
			Username:        opt.Username,
			Password:        opt.Password,
			DB:              opt.DB,
			TLSConfig:       opt.TLSConfig,
			DialTimeout:     opt.DialTimeout,
			ReadTimeout:     opt.ReadTimeout,
			WriteTimeout:    opt.WriteTimeout,
			PoolTimeout:     opt.PoolTimeout,
			ConnMaxIdleTime: opt.ConnMaxIdleTime,
			PoolSize:        opt.PoolSize,
		}), nil
	case cfg.Cluster:
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:           cfg.Addrs,
			Username:        opt.Username,
			Password:        opt.Password,
			TLSConfig:       opt.TLSConfig,
			DialTimeout:     opt.DialTimeout,
			ReadTimeout:     opt.ReadTimeout,
			WriteTimeout:    opt.WriteTimeout,
			PoolTimeout:     opt.PoolTimeout,
			ConnMaxIdleTime: opt.ConnMaxIdleTime,
			PoolSize:        opt.PoolSize,
		}), nil
	default:
		return redis.NewClient(opt), nil
	}
}

// slogLogger sends go-redis's own messages (dial failures, pool trouble)
// to the process log instead of stderr.
type slogLogger struct{ log *slog.Logger }

func (l slogLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client: "+scrub(fmt.Sprintf(format, v...)))
}

// SetLogger routes go-redis's internal messages to log. go-redis keeps one
// logger per process, so only the command that wires the process calls it.
func SetLogger(log *slog.Logger) { redis.SetLogger(slogLogger{log}) }

// MinVersion is the oldest Redis llmgate works with: sessions use
// PEXPIRE's NX/GT options (7.0).
const MinVersion = 7

// CheckVersion refuses a Redis server older than MinVersion with an error
// that says so, instead of failing at the first sign-in. A server that
// does not report its version (an embedded one) is accepted; call it once
// Redis has answered.
func CheckVersion(ctx context.Context, rdb redis.UniversalClient) error {
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return nil // an embedded server without INFO server: nothing to check
	}
	return versionProblem(info)
}

// versionProblem reads redis_version from an INFO server answer.
func versionProblem(info string) error {
	for _, line := range strings.Split(info, "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:")
		if !ok {
			continue
		}
		major, _, _ := strings.Cut(v, ".")
		if n, err := strconv.Atoi(major); err == nil && n < MinVersion {
			return fmt.Errorf("LLMGATE_REDIS_URL points at Redis %s; llmgate needs Redis %d or later", v, MinVersion)
		}
		return nil
	}
	return nil
}

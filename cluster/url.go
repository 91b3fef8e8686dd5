package cluster

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/redis/rueidis"
)

// RedisURL is a parsed WSBRIDGE_REDIS_URL. Its String is the URL with the
// password replaced: safe to log.
type RedisURL struct {
	opt      rueidis.ClientOption
	redacted string
}

// urlParams are the query parameters ParseURL accepts: rueidis's own
// (rueidis.ParseURL). Any other is refused, so that a typo does not pass
// unnoticed.
var urlParams = map[string]bool{
	"addr": true, "db": true, "dial_timeout": true, "write_timeout": true,
	"skip_verify": true, "client_name": true, "master_set": true,
}

// ParseURL parses and checks a Redis URL:
//
//	redis://[user:password@]host:port[/db]              one Redis, or one node of a Redis Cluster (found out on connecting)
//	rediss://...                                        the same over TLS (skip_verify=true to skip the certificate check)
//	redis://host1:port?addr=host2:port&addr=host3:port  a Redis Cluster named by several of its nodes
//	redis://sentinel1:26379?addr=sentinel2:26379&master_set=mymaster
//	                                                    Redis Sentinel: the addresses are the sentinels'
//	unix:///path/redis.sock                             one Redis on a unix socket
//
// Other parameters: db, dial_timeout, write_timeout, client_name. Errors
// never hold the password.
func ParseURL(raw string) (RedisURL, error) {
	red := RedactURL(raw)
	if raw == "" {
		return RedisURL{}, errors.New("cluster: empty Redis URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return RedisURL{}, fmt.Errorf("cluster: Redis URL %s does not parse", red)
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
	default:
		return RedisURL{}, fmt.Errorf("cluster: Redis URL %s: scheme %q, want redis, rediss or unix", red, u.Scheme)
	}
	if u.Fragment != "" {
		return RedisURL{}, fmt.Errorf("cluster: Redis URL %s: a fragment (#...) means nothing here", red)
	}
	for k := range u.Query() {
		if !urlParams[k] {
			return RedisURL{}, fmt.Errorf("cluster: Redis URL %s: unknown parameter %q", red, k)
		}
	}
	if u.Scheme != "unix" && u.Host == "" {
		return RedisURL{}, fmt.Errorf("cluster: Redis URL %s names no host", red)
	}
	opt, err := rueidis.ParseURL(raw)
	if err != nil {
		// rueidis's errors name a parameter, never the password; redact
		// all the same.
		return RedisURL{}, fmt.Errorf("cluster: Redis URL %s: %s", red, redactText(err.Error(), u))
	}
	if len(opt.InitAddress) > 1 && opt.SelectDB != 0 && opt.Sentinel.MasterSet == "" {
		return RedisURL{}, fmt.Errorf("cluster: Redis URL %s: a Redis Cluster has only database 0", red)
	}
	return RedisURL{opt: opt, redacted: red}, nil
}

// String returns the URL with its password redacted.
func (r RedisURL) String() string { return r.redacted }

// Addresses returns the addresses the URL names.
func (r RedisURL) Addresses() []string { return append([]string(nil), r.opt.InitAddress...) }

// Sentinel returns the master set name when the URL names Redis Sentinel.
func (r RedisURL) Sentinel() string { return r.opt.Sentinel.MasterSet }

// RedactURL returns raw with its password replaced by "xxxxx", for logs;
// "(unparsable URL)" when it does not parse.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

func redactText(s string, u *url.URL) string {
	if pw, has := u.User.Password(); has && pw != "" {
		s = strings.ReplaceAll(s, pw, "xxxxx")
	}
	return s
}

// NewClient connects to the Redis the URL names. rueidis finds out on
// connecting whether a single address is one Redis or a node of a Redis
// Cluster. Client-side caching is off (nothing here reads through it).
func NewClient(r RedisURL) (rueidis.Client, error) {
	opt := r.opt
	opt.DisableCache = true
	if opt.ClientName == "" {
		opt.ClientName = "wsbridge"
	}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to Redis %s: %w", r.redacted, err)
	}
	return c, nil
}

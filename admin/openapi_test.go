package admin_test

import (
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"gopkg.in/yaml.v3"

	"github.com/wsbridge/wsbridge/admin"
	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/sender"
)

// openAPIDoc reads openapi.yaml.
func openAPIDoc(t testing.TB) map[string]any {
	t.Helper()
	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	return doc
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// openAPIRoutes returns "METHOD /path" for every operation of
// openapi.yaml, sorted.
func openAPIRoutes(t testing.TB) []string {
	t.Helper()
	paths, ok := openAPIDoc(t)["paths"].(map[string]any)
	if !ok {
		t.Fatal("openapi.yaml has no paths")
	}
	var out []string
	for path, item := range paths {
		ops, ok := item.(map[string]any)
		if !ok {
			t.Fatalf("openapi.yaml: path %s is not an object", path)
		}
		for key := range ops {
			if slices.Contains(httpMethods, key) {
				out = append(out, strings.ToUpper(key)+" "+path)
			}
		}
	}
	slices.Sort(out)
	return out
}

// serverRoutes returns "METHOD /path" for every route of an admin server,
// walked with chi.Walk, sorted.
func serverRoutes(t testing.TB, pprof bool) []string {
	t.Helper()
	hub, err := bridge.New(bridge.Config{Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hub.Shutdown(t.Context()) })
	srv, err := admin.New(hub, sender.NewService(hub), admin.Config{Token: token, Pprof: pprof, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	routes, ok := srv.Handler().(chi.Routes)
	if !ok {
		t.Fatalf("Handler() is a %T, not a chi router", srv.Handler())
	}
	var out []string
	err = chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		out = append(out, method+" "+route)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// normalize drops a trailing slash ("/v1/connections/" is how chi names a
// sub-router's root; both forms are served).
func normalize(routes []string) []string {
	out := make([]string, len(routes))
	for i, r := range routes {
		out[i] = strings.TrimSuffix(r, "/")
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestOpenAPIMatchesRoutes: openapi.yaml describes exactly the routes the
// server has, method and path, both ways: with pprof on, all of them; with
// it off, all but /debug/pprof.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	spec := normalize(openAPIRoutes(t))
	for _, pprof := range []bool{true, false} {
		want := spec
		if !pprof {
			want = slices.DeleteFunc(slices.Clone(spec), func(r string) bool { return strings.Contains(r, " /debug/pprof") })
		}
		got := normalize(serverRoutes(t, pprof))
		for _, r := range got {
			if !slices.Contains(want, r) {
				t.Errorf("pprof %v: the server has %s, openapi.yaml does not", pprof, r)
			}
		}
		for _, r := range want {
			if !slices.Contains(got, r) {
				t.Errorf("pprof %v: openapi.yaml has %s, the server does not", pprof, r)
			}
		}
	}
	if len(spec) < 20 {
		t.Errorf("openapi.yaml has %d operations, want at least 20", len(spec))
	}
}

// TestOpenAPIRefs: every $ref points at something in the file, and every
// error code the server can answer is listed.
func TestOpenAPIRefs(t *testing.T) {
	doc := openAPIDoc(t)
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k == "$ref" {
					ref, _ := x.(string)
					if !resolves(doc, ref) {
						t.Errorf("$ref %q does not resolve", ref)
					}
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	b, _ := os.ReadFile("openapi.yaml")
	for _, code := range []string{"bad_request", "invalid_fd", "invalid_opcode", "too_large", "invalid_utf8",
		"invalid_close_code", "invalid_name", "too_many_groups", "shutting_down", "internal",
		sender.CodeUnauthorized, sender.CodeTokenNotSet, sender.CodeNotFound, sender.CodeMethodNotAllowed} {
		if !strings.Contains(string(b), code) {
			t.Errorf("openapi.yaml does not list the error code %s", code)
		}
	}
}

func resolves(doc map[string]any, ref string) bool {
	path, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return false
	}
	var cur any = doc
	for _, part := range strings.Split(path, "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[part]; !ok {
			return false
		}
	}
	return true
}

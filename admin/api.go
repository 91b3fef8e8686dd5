package admin

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/sender"
)

// v1 is the versioned JSON API. Its pushes and disconnects call the
// sender.Service: the semantics, limits and error codes of the RPC methods.
func (s *Server) v1() chi.Router {
	r := chi.NewRouter()
	r.Route("/connections", func(r chi.Router) {
		r.Get("/", s.listConnections)
		r.Route("/{fd}", func(r chi.Router) {
			r.Use(fdCtx)
			r.Get("/", s.getConnection)
			r.Post("/push", s.push)
			r.Post("/disconnect", s.disconnect)
			r.Get("/trace", s.getTrace)
			r.Post("/trace", s.startTrace)
			r.Delete("/trace", s.stopTrace)
		})
	})
	r.Post("/push", s.pushMany)
	r.Post("/broadcast", s.broadcast)
	r.Route("/groups", func(r chi.Router) {
		r.Get("/", s.listGroups)
		r.Route("/{group}", func(r chi.Router) {
			r.Use(nameCtx("group"))
			r.Get("/", s.getGroup)
			r.Post("/push", s.pushGroup)
		})
	})
	r.Get("/nodes", s.listNodes)
	r.Get("/stream", s.stream)
	r.Get("/about", s.about)
	r.Route("/users/{user}", func(r chi.Router) {
		r.Use(nameCtx("user"))
		r.Get("/", s.getUser)
		r.Post("/push", s.pushUser)
	})
	return r
}

// fdCtx reads the {fd} of the path into the request's context; an fd that
// no connection can have is answered 400 invalid_fd.
func fdCtx(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := chi.URLParam(r, "fd")
		fd, ok := parseUint(raw, bridge.MaxFD)
		if !ok || !bridge.ValidFD(fd) {
			writeError(w, r, sender.CodeInvalidFD, fmt.Sprintf("fd %q: want an integer 1..%d", raw, int64(bridge.MaxFD)))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), fdKey, fd)))
	})
}

// nameCtx reads a group name or user id ({param}) from the path into the
// request's context. A name may hold any character, "/" included, when
// the client percent-encodes it; it is decoded here.
func nameCtx(param string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			name := chi.URLParam(r, param)
			if r.URL.RawPath != "" { // chi matched the escaped path: the parameter is escaped too
				var err error
				if name, err = url.PathUnescape(name); err != nil {
					writeError(w, r, sender.CodeBadRequest, fmt.Sprintf("%s: bad percent-encoding", param))
					return
				}
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), nameKey, name)))
		})
	}
}

func (s *Server) listConnections(w http.ResponseWriter, r *http.Request) {
	q, err := parsePage(r.URL.RawQuery)
	if err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, s.svc.Connections(q))
}

func (s *Server) getConnection(w http.ResponseWriter, r *http.Request) {
	info, err := s.svc.Info(fdOf(r))
	if err != nil {
		fail(w, r, err)
		return
	}
	if !info.Connected {
		writeError(w, r, sender.CodeNotFound, fmt.Sprintf("fd %d is not an open connection", fdOf(r)))
		return
	}
	writeJSON(w, r, http.StatusOK, info)
}

// pushBody is the body of POST /v1/connections/{fd}/push: Sender.Push's
// arguments but the fd, which is in the path.
type pushBody struct {
	Finish *bool `json:"finish,omitempty"`
	Ack    *bool `json:"ack,omitempty"`
	sender.Message
}

// Queued is the answer of a push to one fd: false when the fd is not an
// open connection or its send queue is full (as Sender.Push).
type Queued struct {
	Queued bool `json:"queued"`
}

// Accepted is the answer of a push to many connections: how many accepted
// the message.
type Accepted struct {
	Accepted   int `json:"accepted"`
	Unanswered int `json:"unanswered_nodes,omitempty"` // cluster nodes that did not answer in time
}

// Disconnected is the answer of a disconnect: false when the fd was not
// open.
type Disconnected struct {
	Disconnected bool `json:"disconnected"`
}

func (s *Server) push(w http.ResponseWriter, r *http.Request) {
	var b pushBody
	if err := readBody(w, r, s.cfg.MaxBody, &b, false); err != nil {
		fail(w, r, err)
		return
	}
	ok, err := s.svc.Push(&sender.PushArgs{FD: fdOf(r), Finish: b.Finish, Ack: b.Ack, Message: b.Message})
	if err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, Queued{ok})
}

// disconnectBody is the body of POST /v1/connections/{fd}/disconnect; it
// may be left out.
type disconnectBody struct {
	Code   int    `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func (s *Server) disconnect(w http.ResponseWriter, r *http.Request) {
	var b disconnectBody
	if err := readBody(w, r, s.cfg.MaxBody, &b, true); err != nil {
		fail(w, r, err)
		return
	}
	ok, err := s.svc.Disconnect(&sender.DisconnectArgs{FD: fdOf(r), Code: b.Code, Reason: b.Reason})
	if err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, Disconnected{ok})
}

// pushToMany decodes a body into args and answers call(args).
func pushToMany[A any](s *Server, w http.ResponseWriter, r *http.Request, args *A, call func(*A) (int, int, error)) {
	if err := readBody(w, r, s.cfg.MaxBody, args, false); err != nil {
		fail(w, r, err)
		return
	}
	n, unanswered, err := call(args)
	if err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, Accepted{n, unanswered})
}

func (s *Server) pushMany(w http.ResponseWriter, r *http.Request) {
	pushToMany(s, w, r, &sender.PushManyArgs{}, s.svc.PushMany)
}

func (s *Server) broadcast(w http.ResponseWriter, r *http.Request) {
	pushToMany(s, w, r, &sender.BroadcastArgs{}, s.svc.Broadcast)
}

// groupPushBody is the body of POST /v1/groups/{group}/push.
type groupPushBody struct {
	Except []int64 `json:"except,omitempty"`
	sender.Message
}

func (s *Server) pushGroup(w http.ResponseWriter, r *http.Request) {
	pushToMany(s, w, r, &groupPushBody{}, func(b *groupPushBody) (int, int, error) {
		return s.svc.PushGroup(&sender.PushGroupArgs{Group: nameOf(r), Except: b.Except, Message: b.Message})
	})
}

func (s *Server) pushUser(w http.ResponseWriter, r *http.Request) {
	pushToMany(s, w, r, &sender.Message{}, func(m *sender.Message) (int, int, error) {
		return s.svc.PushUser(&sender.PushUserArgs{User: nameOf(r), Message: *m})
	})
}

// Group is one entry of GET /v1/groups.
type Group struct {
	Name    string `json:"name"`
	Members int    `json:"members"`
}

// GroupList is the answer of GET /v1/groups, sorted by name.
type GroupList struct {
	Groups     []Group `json:"groups"`
	Unanswered int     `json:"unanswered_nodes,omitempty"` // cluster nodes that did not answer in time
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) {
	if r.URL.RawQuery != "" {
		fail(w, r, sender.BadRequest("GET /v1/groups takes no query parameters"))
		return
	}
	counts, unanswered, err := s.svc.Groups()
	if err != nil {
		fail(w, r, err)
		return
	}
	out := GroupList{Groups: make([]Group, 0, len(counts)), Unanswered: unanswered}
	for name, n := range counts {
		out.Groups = append(out.Groups, Group{Name: name, Members: n})
	}
	slices.SortFunc(out.Groups, func(a, b Group) int { return strings.Compare(a.Name, b.Name) })
	writeJSON(w, r, http.StatusOK, out)
}

// GroupMembers is the answer of GET /v1/groups/{group}: its fds, sorted
// (empty for a group without members: groups exist while they have some).
type GroupMembers struct {
	Group      string  `json:"group"`
	Members    []int64 `json:"members"`
	Unanswered int     `json:"unanswered_nodes,omitempty"` // cluster nodes that did not answer in time
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) {
	fds, unanswered, err := s.svc.GroupMembers(nameOf(r))
	if err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, GroupMembers{Group: nameOf(r), Members: fds, Unanswered: unanswered})
}

// UserFDs is the answer of GET /v1/users/{user}: the fds bound to the
// user, sorted.
type UserFDs struct {
	User       string  `json:"user"`
	FDs        []int64 `json:"fds"`
	Unanswered int     `json:"unanswered_nodes,omitempty"` // cluster nodes that did not answer in time
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) {
	fds, unanswered, err := s.svc.UserFDs(nameOf(r))
	if err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, UserFDs{User: nameOf(r), FDs: fds, Unanswered: unanswered})
}

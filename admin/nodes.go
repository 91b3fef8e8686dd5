package admin

import (
	"context"
	"net/http"
)

// NodeInfo is one node of GET /v1/nodes.
type NodeInfo struct {
	ID          int    `json:"id"`
	Gen         int64  `json:"gen"` // the node's run: a restarted node gets a new one
	Address     string `json:"address"`
	Hostname    string `json:"hostname"`
	PID         int    `json:"pid"`
	Started     int64  `json:"started"`     // unix seconds
	Connections int64  `json:"connections"` // as of its last heartbeat
	// HeartbeatAgeMillis is the time since its last heartbeat.
	HeartbeatAgeMillis int64 `json:"heartbeat_age_ms"`
	// Expired: its heartbeat stopped and the survivors have not yet
	// reported its connections closed.
	Expired bool `json:"expired"`
	Self    bool `json:"self"` // the node that answers
}

// NodeList is the answer of GET /v1/nodes. Connections is the sum of the
// nodes' counts.
type NodeList struct {
	Cluster     bool       `json:"cluster"` // false: one standalone node
	Nodes       []NodeInfo `json:"nodes"`
	Connections int64      `json:"connections"`
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) {
	out := NodeList{Nodes: []NodeInfo{}}
	if s.cfg.Nodes == nil {
		st := s.svc.Stats()
		out.Nodes = append(out.Nodes, NodeInfo{ID: st.NodeID, Connections: int64(st.Connections), Self: true})
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), readyCheckTimeout)
		defer cancel()
		nodes, err := s.cfg.Nodes(ctx)
		if err != nil {
			fail(w, r, err)
			return
		}
		out.Cluster, out.Nodes = true, nodes
	}
	for _, n := range out.Nodes {
		out.Connections += n.Connections
	}
	writeJSON(w, r, http.StatusOK, out)
}

// Package bridge holds WebSocket connections and routes pushes to them by fd.
//
// A Hub accepts WebSocket upgrades (it is an http.Handler), gives every
// connection an fd that is never reused while the Hub runs, and partitions the
// connections across a fixed number of workers. The worker that owns an fd is
// computed from the fd itself, so a push touches exactly one worker (a read
// lock and a map lookup) and one connection (its bounded send queue); no other
// worker or connection is involved.
//
// Concurrency: all Hub methods are safe for concurrent use. Each connection
// has exactly one reader goroutine for its lifetime and at most one writer
// goroutine at a time, started only while the connection's send queue holds
// something to write. Nothing outside the writer goroutine writes data to a
// *websocket.Conn; the reader's protocol replies (pong, close) go through the
// same queue. See docs/DESIGN.md for the reasons behind each choice.
package bridge

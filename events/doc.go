// Package events delivers the bridge's connection events (open, message,
// close) to the PHP application by HTTP POST, and asks it to authorize
// handshakes. The wire format is the contract in docs/PROTOCOL.md, sections
// "Events" and "Handshake authorization".
//
// A Dispatcher is a bridge.Listener. Its callbacks run on each connection's
// reader goroutine and never touch the network: they encode the event, append
// it to the connection's queue in memory (or drop it, per the overflow
// policy) and wake a sender. A fixed pool of Config.Concurrency sender
// goroutines takes the connections that have events waiting, gathers their
// events into one request, posts it and retries it until it is acknowledged
// (past Config.Retries, split per connection, then per event, so that one
// event the application fails on holds nothing else). A connection has at
// most one request in flight, so its events arrive in order; different
// connections are delivered in parallel.
//
// Memory is bounded: every pending event counts against Config.QueueTotal
// and Config.QueueBytes, with room reserved for the close event of every
// connection whose open event was accepted. Admit tells the hub, before an
// upgrade, whether there is room for one more connection.
//
// Concurrency: every method is safe for concurrent use. The sender goroutines
// start in New and end in Shutdown, which first drains what is pending within
// its context's deadline. See docs/DESIGN.md ("Events") for the reasons
// behind each choice.
package events

// Package sender is the transport-neutral Sender API of wsbridge: the
// request and reply types, the one table of error codes, and the Service
// that checks, limits and carries out every call (push to an fd, a group,
// a user or everyone; disconnect; groups and users; info, listings and
// stats). rpc/ (goridge) and admin/ (HTTP) are thin transports over it.
package sender

//go:build !linux

package bridge

// The poll read mode needs epoll (poll.go): elsewhere the configuration
// refuses it (Config.validate) and a Hub reads every connection in a
// goroutine of its own. These stand-ins are never reached with a poller.

const pollSupported = false

type poller struct{}

func newPoller(*Hub) (*poller, error) { return nil, errPollNeedsLinux }

func (p *poller) adopt(*conn) bool  { return false }
func (p *poller) serve(*conn)       {}
func (p *poller) forget(*conn)      {}
func (p *poller) stop()             {}
func (p *poller) stats() *PollStats { return nil }
func (c *conn) kick()               {}
func (c *conn) expire()             {}
func (c *conn) pollTimedOut()       {}

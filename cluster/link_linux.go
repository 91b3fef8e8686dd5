package cluster

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// linkSocket sets TCP_USER_TIMEOUT on a link's socket: data the other
// node's machine has not acknowledged for linkUserTimeout breaks the link
// (its machine is gone, or cut off), where TCP alone would retransmit
// for about 15 minutes while every frame written there is lost.
func linkSocket(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(linkUserTimeout.Milliseconds()))
	})
	if err != nil {
		return err
	}
	return serr
}

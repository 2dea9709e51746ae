package testenv

import "syscall"

// childAttrs: the child dies with the test binary (SIGKILL on parent death)
// and gets its own process group, so a ^C to `go test` reaches it only that way.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

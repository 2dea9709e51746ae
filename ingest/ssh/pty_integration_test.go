package sshproxy_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// terminal is a pseudo-terminal the OpenSSH client runs in, so that it requests a
// pty and sends window changes when the terminal is resized, like for a person.
type terminal struct {
	master, slave *os.File
	mu            sync.Mutex
	out           []byte // everything the client wrote to its terminal
	closed        chan struct{}
}

func openTerminal(rows, cols uint16) (*terminal, error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("pty number: %w", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, err
	}
	term := &terminal{master: m, slave: s, closed: make(chan struct{})}
	if err := term.resize(rows, cols); err != nil {
		term.Close()
		return nil, err
	}
	go term.read()
	return term, nil
}

func (t *terminal) read() {
	defer close(t.closed)
	buf := make([]byte, 4096)
	for {
		n, err := t.master.Read(buf)
		t.mu.Lock()
		t.out = append(t.out, buf[:n]...)
		t.mu.Unlock()
		if err != nil { // EIO once the client and its children closed the slave
			return
		}
	}
}

// resize changes the terminal size; the kernel signals SIGWINCH to the client.
func (t *terminal) resize(rows, cols uint16) error {
	return unix.IoctlSetWinsize(int(t.master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
}

// attach makes the terminal cmd's controlling terminal and stdio.
func (t *terminal) attach(cmd *exec.Cmd) {
	cmd.Stdin, cmd.Stdout, cmd.Stderr = t.slave, t.slave, t.slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
}

func (t *terminal) typeLine(s string) error {
	_, err := io.WriteString(t.master, s+"\r")
	return err
}

func (t *terminal) output() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.out)
}

// waitFor waits until the terminal shows want.
func (t *terminal) waitFor(want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(t.output(), want) {
		if time.Now().After(deadline) {
			return fmt.Errorf("terminal did not show %q within %s; it shows %q", want, timeout, t.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// drained waits until the client side is gone and everything was read.
func (t *terminal) drained(timeout time.Duration) error {
	select {
	case <-t.closed:
		return nil
	case <-time.After(timeout):
		return errors.New("terminal still open")
	}
}

func (t *terminal) Close() {
	t.slave.Close()
	t.master.Close()
}

// closeSlave drops the test's handle on the slave once the client has its own,
// so that reading the master ends when the client exits.
func (t *terminal) closeSlave() { t.slave.Close() }

// waitRaw waits until the client has put the terminal in raw mode: typing before
// that would be echoed and translated by the local line discipline.
func (t *terminal) waitRaw(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		tio, err := unix.IoctlGetTermios(int(t.master.Fd()), unix.TCGETS)
		if err != nil {
			return err
		}
		if tio.Lflag&(unix.ECHO|unix.ICANON) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("client never put the terminal in raw mode")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

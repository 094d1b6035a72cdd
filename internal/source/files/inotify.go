package files

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// change is one name in the watched folder that changed (the watched path
// itself when it is a file).
type change struct {
	name string
	// done: the change is whole — a file closed after writing, moved in or
	// out, or removed. Otherwise it is a write that may go on.
	done bool
	// gone: the watch itself ended (the folder or file was removed or
	// replaced); it must be added again.
	gone bool
}

// notifier reads the kernel's inotify events for one path. inotify, unlike
// the portable watchers, says when a file written to is closed: a manifest
// saved in one go is then read at once rather than after a quiet time.
type notifier struct {
	f       *os.File
	fd      int
	path    string
	changes chan change
	// closed ends the reader, also while it waits to hand on a change
	// nobody takes any more.
	closed chan struct{}
	// err is why changes was closed, if not by close.
	err error
}

const watchMask = unix.IN_CLOSE_WRITE | unix.IN_MODIFY | unix.IN_CREATE | unix.IN_DELETE |
	unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF

// whole are the events after which a file is as its writer left it.
const whole = unix.IN_CLOSE_WRITE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_Q_OVERFLOW

func newNotifier(path string) (*notifier, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	// Non-blocking, so that the runtime's poller waits for it and Close
	// ends a pending Read.
	n := &notifier{f: os.NewFile(uintptr(fd), "inotify"), fd: fd, path: path, changes: make(chan change, 64), closed: make(chan struct{})}
	go n.read()
	return n, nil
}

// watch (again) adds the path.
func (n *notifier) watch() error {
	_, err := unix.InotifyAddWatch(n.fd, n.path, watchMask)
	return err
}

func (n *notifier) close() {
	close(n.closed)
	n.f.Close()
}

func (n *notifier) read() {
	defer close(n.changes)
	buf := make([]byte, 64<<10)
	for {
		k, err := n.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				n.err = fmt.Errorf("inotify: %w", err)
			}
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= k; {
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			size := int(binary.NativeEndian.Uint32(buf[off+12:]))
			name := n.path
			if size > 0 {
				raw := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+size]
				name = filepath.Join(n.path, string(bytes.TrimRight(raw, "\x00")))
			}
			off += unix.SizeofInotifyEvent + size
			select {
			case n.changes <- change{name: name, done: mask&whole != 0, gone: mask&unix.IN_IGNORED != 0}:
			case <-n.closed:
				return
			}
		}
	}
}

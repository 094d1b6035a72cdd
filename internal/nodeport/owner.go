package nodeport

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/svcproxy/svcproxy/internal/model"
)

// Holder is a process with a socket on a port.
type Holder struct {
	Pid     int    `json:"pid"`
	Command string `json:"command"`
	// State is "listening", "connected" or "bound" (UDP, or TCP not yet
	// listening or connected).
	State string `json:"state"`
	Local string `json:"local"`
}

func (h Holder) String() string {
	return fmt.Sprintf("pid %d (%s), %s on %s", h.Pid, h.Command, h.State, h.Local)
}

// ProcRoot is where /proc is; tests point it at a fake tree.
var ProcRoot = "/proc"

// Holders returns the processes with a socket whose local port is port, in
// this network namespace (/proc/net is per namespace; /proc/<pid>/fd is
// read for every process). Sockets of the calling process are left out.
func Holders(port int32, proto model.Protocol) ([]Holder, error) {
	files := []string{"tcp", "tcp6"}
	if proto == model.UDP {
		files = []string{"udp", "udp6"}
	}
	byInode := map[string]Holder{}
	for _, f := range files {
		if err := scanSockets(filepath.Join(ProcRoot, "net", f), port, proto, byInode); err != nil {
			return nil, err
		}
	}
	if len(byInode) == 0 {
		return nil, nil
	}
	return owners(byInode), nil
}

// scanSockets reads one /proc/net table and records sockets on port.
func scanSockets(path string, port int32, proto model.Protocol, out map[string]Holder) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		addr, portHex, ok := strings.Cut(fields[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(portHex, 16, 16)
		if err != nil || int32(p) != port {
			continue
		}
		inode := fields[9]
		if inode == "0" { // TIME_WAIT and the like belong to no process
			continue
		}
		out[inode] = Holder{State: socketState(proto, fields[3]), Local: fmt.Sprintf("%s:%d", hexAddr(addr), p)}
	}
	return sc.Err()
}

func socketState(proto model.Protocol, st string) string {
	if proto == model.UDP {
		return "bound"
	}
	switch st {
	case "0A":
		return "listening"
	case "01", "02", "03", "04", "05", "08", "09", "0B":
		return "connected"
	}
	return "bound"
}

// hexAddr turns /proc/net's little-endian hex address into text.
func hexAddr(h string) string {
	b := make([]byte, 0, 16)
	for i := 0; i+8 <= len(h); i += 8 {
		w, err := strconv.ParseUint(h[i:i+8], 16, 32)
		if err != nil {
			return h
		}
		b = append(b, byte(w), byte(w>>8), byte(w>>16), byte(w>>24))
	}
	if len(b) == 4 {
		return fmt.Sprintf("%d.%d.%d.%d", b[0], b[1], b[2], b[3])
	}
	if len(b) == 16 && string(b[:12]) == "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff" {
		return fmt.Sprintf("%d.%d.%d.%d", b[12], b[13], b[14], b[15])
	}
	var parts []string
	for i := 0; i < len(b); i += 2 {
		parts = append(parts, strconv.FormatUint(uint64(b[i])<<8|uint64(b[i+1]), 16))
	}
	return "[" + strings.Join(parts, ":") + "]"
}

// owners finds the processes holding the given socket inodes.
func owners(byInode map[string]Holder) []Holder {
	self := os.Getpid()
	procs, _ := os.ReadDir(ProcRoot)
	var out []Holder
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join(ProcRoot, p.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil || !strings.HasPrefix(target, "socket:[") {
				continue
			}
			inode := strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")
			if h, ok := byInode[inode]; ok {
				delete(byInode, inode)
				if pid == self {
					continue // svcproxy's own holding socket
				}
				h.Pid, h.Command = pid, command(pid)
				out = append(out, h)
			}
		}
	}
	// Sockets no process could be found for (another user's process we may
	// not read, or one that just exited) are still reported.
	for _, h := range byInode {
		h.Command = "unknown"
		out = append(out, h)
	}
	return out
}

func command(pid int) string {
	b, err := os.ReadFile(filepath.Join(ProcRoot, strconv.Itoa(pid), "cmdline"))
	if err == nil && len(b) > 0 {
		return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
	}
	if b, err := os.ReadFile(filepath.Join(ProcRoot, strconv.Itoa(pid), "comm")); err == nil {
		return strings.TrimSpace(string(b))
	}
	return "unknown"
}

package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/svcproxy/svcproxy/internal/sysctl"
)

// kernelWide are the settings a kubelet changes for the whole machine, not
// per network namespace: restored on Close.
var kernelWide = []string{
	"vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes",
}

// fixedPaths are the host paths a kubelet and containerd's shims use
// whatever they are told: the kubelet's container log links and device
// plugin socket, the shims' sockets.
var fixedPaths = []string{"/var/log/containers", "/var/lib/kubelet/device-plugins", "/var/lib/kubelet", "/run/containerd/s", "/run/containerd",
	"/var/lib/cni/results", "/var/lib/cni"}

// The kernel-wide settings are the host's, not a cluster's: clusters side
// by side (both modes in the tests) share them. They are read before the
// first of this process's clusters starts and put back when the last one
// closes; a cluster that read them after another's kubelet had changed
// them would otherwise "restore" the kubelet's values.
var (
	clustersMu sync.Mutex
	running    int
	before     map[string]string
)

func kernelWideBefore() {
	clustersMu.Lock()
	defer clustersMu.Unlock()
	if running == 0 {
		before = map[string]string{}
		for _, name := range kernelWide {
			if v, err := sysctl.Get(name); err == nil {
				before[name] = v
			}
		}
	}
	running++
}

// lastCluster returns the settings to put back when the closing cluster is
// the last one running, nil otherwise.
func lastCluster() map[string]string {
	clustersMu.Lock()
	defer clustersMu.Unlock()
	running--
	if running > 0 {
		return nil
	}
	return before
}

// hostState is what the cluster changed on the host, to undo.
type hostState struct {
	// cgroups are the node's cgroup directories made, in each hierarchy.
	cgroups []string
	// made are the fixedPaths that did not exist before.
	made []string
	// containers are the IDs of the containers (and pod sandboxes) the
	// nodes ran: CNI's result cache names its files by them.
	containers []string
}

func (c *Cluster) saveHost(context.Context) error {
	kernelWideBefore()
	h := &hostState{}
	for _, p := range fixedPaths {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			h.made = append(h.made, p)
		}
	}
	c.host = h
	return nil
}

// tidyFixedPaths removes from the fixed paths what the cluster left there:
// links to its container logs, sockets nobody listens on any more (another
// cluster's live ones stay); then those of the paths it made that are
// empty.
func (h *hostState) tidyFixedPaths(dir string) {
	for _, p := range fixedPaths {
		entries, err := os.ReadDir(p)
		if err != nil {
			continue
		}
		for _, e := range entries {
			f := filepath.Join(p, e.Name())
			switch {
			case p == "/var/lib/cni/results" && slices.ContainsFunc(h.containers, func(id string) bool { return strings.Contains(e.Name(), "-"+id+"-") }):
				_ = os.Remove(f)
			case e.Type()&os.ModeSymlink != 0:
				if target, err := os.Readlink(f); err == nil && strings.HasPrefix(target, dir+"/") {
					_ = os.Remove(f)
				}
			case e.Type()&os.ModeSocket != 0:
				if c, err := net.Dial("unix", f); err == nil {
					c.Close()
				} else {
					_ = os.Remove(f)
				}
			}
		}
	}
	for _, p := range h.made {
		_ = os.Remove(p) // only when empty
	}
}

// makeCgroupRoot makes the node's cgroup in every hierarchy (cgroup v1)
// or in the unified one; a cpuset gets its parent's CPUs and memory nodes,
// as it starts without any.
func (h *hostState) makeCgroupRoot(root string) error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	for _, m := range mounts {
		dir := filepath.Join(m, root)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("make cgroup %s: %w", dir, err)
		}
		h.cgroups = append(h.cgroups, dir)
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(m, f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
					return fmt.Errorf("set %s of %s: %w", f, dir, err)
				}
			}
		}
	}
	return nil
}

// cgroupMounts are the mount points of the cgroup file systems.
func cgroupMounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 0 || sep+1 >= len(fields) {
			continue
		}
		if fs := fields[sep+1]; fs == "cgroup" || fs == "cgroup2" {
			out = append(out, fields[4])
		}
	}
	return out, sc.Err()
}

// restore undoes what the node did: mounts under dir (pods' volumes,
// container root file systems, network namespace files) are unmounted,
// the node's cgroups removed (deepest first), and the kernel-wide
// settings put back.
func (h *hostState) restore(dir string) error {
	var errs []error
	if dir != "" {
		errs = append(errs, unmountUnder(dir))
		h.tidyFixedPaths(dir)
	}
	for _, cg := range h.cgroups {
		errs = append(errs, removeCgroup(cg))
	}
	for name, v := range lastCluster() {
		if _, err := sysctl.Ensure(name, v); err != nil {
			errs = append(errs, fmt.Errorf("restore: %w", err))
		}
	}
	return errors.Join(errs...)
}

// unmountUnder unmounts every mount point below dir, deepest first.
func unmountUnder(dir string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// removeCgroup removes a cgroup directory and those below it, deepest
// first, after killing what is still in them.
func removeCgroup(dir string) error {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, d := range dirs {
		if procs, err := os.ReadFile(filepath.Join(d, "cgroup.procs")); err == nil {
			for _, pid := range strings.Fields(string(procs)) {
				if n, err := strconv.Atoi(pid); err == nil {
					_ = syscall.Kill(n, syscall.SIGKILL)
				}
			}
		}
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// killShims kills the runc shims serving this containerd (found by the
// socket address on their command line), which outlive it.
func killShims(sock string) error {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 0 && strings.HasSuffix(args[0], "containerd-shim-runc-v2") && slices.Contains(args, sock) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return nil
}

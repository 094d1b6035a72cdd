package nodeport

import (
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/svcproxy/svcproxy/internal/model"
)

// A real process listening on a port is found by pid and command line.
func TestHoldersFindsAnotherProcess(t *testing.T) {
	port := freePort(t)
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	cmd := exec.Command(py, "-c", "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',"+itoa(port)+")); s.listen(); print('ready', flush=True); time.sleep(30)")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil {
		t.Fatal(err)
	}
	hs, err := Holders(port, model.TCP)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 1 || hs[0].Pid != cmd.Process.Pid || hs[0].State != "listening" || hs[0].Local != "127.0.0.1:"+itoa(port) ||
		!strings.Contains(hs[0].Command, "socket.socket()") {
		t.Fatalf("holders = %+v, want pid %d listening", hs, cmd.Process.Pid)
	}
}

func TestHoldersIgnoresOwnSocketsAndFreePorts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := int32(l.Addr().(*net.TCPAddr).Port)
	if hs, err := Holders(port, model.TCP); err != nil || len(hs) != 0 {
		t.Errorf("own listener reported: %v %v", hs, err)
	}
	if hs, err := Holders(freePort(t), model.UDP); err != nil || len(hs) != 0 {
		t.Errorf("free port: %v %v", hs, err)
	}
}

func TestHexAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F":                         "127.0.0.1",
		"0101A8C0":                         "192.168.1.1",
		"0000000000000000FFFF00000100007F": "127.0.0.1",
		"00000000000000000000000001000000": "[0:0:0:0:0:0:0:1]",
	} {
		if got := hexAddr(in); got != want {
			t.Errorf("hexAddr(%s) = %s, want %s", in, got, want)
		}
	}
}

// Command pause is the pod sandbox's process: it holds the pod's namespaces
// open, does nothing, and ends on SIGINT or SIGTERM. It is what the local
// registry.k8s.io/pause image runs, so that no image is pulled.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	// As PID 1 of the pod it also reaps the children that exit.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGCHLD)
	go func() {
		for {
			var ws syscall.WaitStatus
			if _, err := syscall.Wait4(-1, &ws, 0, nil); err != nil {
				select {}
			}
		}
	}()
	<-ch
}

package cluster

import (
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Spec is one e2e spec's outcome.
type Spec struct {
	Name string
	// State is passed, failed or skipped.
	State   string
	Message string
	Took    time.Duration
}

// E2E runs Kubernetes' e2e tests (binary, built by make cluster-tools)
// against the cluster from the client namespace: the specs matching focus
// and not skip. It returns the outcome of each spec focus selects, and the
// run's output.
func (c *Cluster) E2E(ctx context.Context, binary, focus, skip string) ([]Spec, string, error) {
	report := c.path("e2e-report")
	if err := os.MkdirAll(report, 0o755); err != nil {
		return nil, "", err
	}
	args := []string{binary, "--kubeconfig=" + c.AdminKubeconfig, "--provider=local", "--report-dir=" + report,
		"--ginkgo.focus=" + focus, "--ginkgo.no-color", "--ginkgo.timeout=2h", "--minStartupPods=1",
		"--e2e-output-dir=" + c.path("e2e-output"), "--test.timeout=0"}
	if skip != "" {
		args = append(args, "--ginkgo.skip="+skip)
	}
	out, runErr := c.Lab.Client.Run(ctx, args...)
	specs, err := readJUnit(filepath.Join(report, "junit_01.xml"), focus, skip)
	if err != nil {
		return nil, out, fmt.Errorf("e2e run (%v): %w", runErr, err)
	}
	return specs, out, nil
}

type junit struct {
	Cases []struct {
		Name    string  `xml:"name,attr"`
		Time    float64 `xml:"time,attr"`
		Skipped *struct {
			Message string `xml:"message,attr"`
		} `xml:"skipped"`
		Failure *struct {
			Message string `xml:"message,attr"`
		} `xml:"failure"`
	} `xml:"testsuite>testcase"`
}

// readJUnit reads the report's specs that focus and skip select (ginkgo
// lists every spec, those it filtered out as skipped).
func readJUnit(path, focus, skip string) ([]Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r junit
	if err := xml.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	in := regexp.MustCompile(focus)
	var out *regexp.Regexp
	if skip != "" {
		out = regexp.MustCompile(skip)
	}
	var specs []Spec
	for _, tc := range r.Cases {
		name := strings.TrimPrefix(tc.Name, "[It] ")
		if !in.MatchString(name) || (out != nil && out.MatchString(name)) {
			continue
		}
		s := Spec{Name: name, State: "passed", Took: time.Duration(tc.Time * float64(time.Second))}
		switch {
		case tc.Failure != nil:
			s.State, s.Message = "failed", tc.Failure.Message
		case tc.Skipped != nil:
			s.State, s.Message = "skipped", tc.Skipped.Message
		}
		specs = append(specs, s)
	}
	return specs, nil
}

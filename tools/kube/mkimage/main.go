// Command mkimage turns a root file system (a directory) into a container
// image and writes it as a tarball that `ctr images import` (and `docker
// load`) take, under the name given: the real cluster's images (pause,
// agnhost, svcproxy) are built here, so nothing is pulled from a registry.
//
//	mkimage -name registry.k8s.io/pause:3.10.2 -o pause.tar -entrypoint /pause ROOTFS
//
// The tree goes into one layer, owned by root, with a fixed time, so that
// the same files make the same image. With -registry DIR the image is also
// written as agnhost's fake-registry-server serves images (the e2e tests'
// private registry): DIR/REPO/manifests/TAG holding the manifest's digest,
// and manifests and blobs under sha256/XX/HASH/data.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

// epoch is every file's time: images built from the same files are the
// same image.
var epoch = time.Unix(0, 0)

func main() {
	var env list
	ref := flag.String("name", "", "the image's name (REPOSITORY:TAG)")
	out := flag.String("o", "", "the tarball to write")
	entrypoint := flag.String("entrypoint", "", "the entrypoint, comma-separated")
	cmd := flag.String("cmd", "", "the default arguments, comma-separated")
	flag.Var(&env, "env", "NAME=VALUE in the image's environment (repeatable)")
	registry := flag.String("registry", "", "also write the image into this fake-registry-server folder, as REPO:TAG of -registry-ref")
	registryRef := flag.String("registry-ref", "", "with -registry: the repository and tag it is served as (pause:testing)")
	flag.Parse()
	if *ref == "" || *out == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: mkimage -name NAME -o FILE [-entrypoint ...] [-cmd ...] [-env ...] ROOTFS")
		os.Exit(2)
	}
	if err := run(*ref, *out, *entrypoint, *cmd, env, flag.Arg(0), *registry, *registryRef); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(ref, out, entrypoint, cmd string, env []string, rootfs, registry, registryRef string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image name %q: %w", ref, err)
	}
	layerTar, err := layer(rootfs)
	if err != nil {
		return err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil })
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.DockerManifestSchema2), l)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = "amd64", "linux", v1.Time{Time: epoch}
	cf.Config.Env = env
	if entrypoint != "" {
		cf.Config.Entrypoint = strings.Split(entrypoint, ",")
	}
	if cmd != "" {
		cf.Config.Cmd = strings.Split(cmd, ",")
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	if registry != "" {
		if err := writeRegistry(registry, registryRef, img); err != nil {
			return fmt.Errorf("registry folder: %w", err)
		}
	}
	return tarball.WriteToFile(out, tag, img)
}

// writeRegistry writes img as fake-registry-server reads it.
func writeRegistry(dir, ref string, img v1.Image) error {
	repo, tag, ok := strings.Cut(ref, ":")
	if !ok || repo == "" || tag == "" {
		return fmt.Errorf("-registry-ref %q: want REPO:TAG", ref)
	}
	base := filepath.Join(dir, repo)
	put := func(kind string, digest v1.Hash, data []byte) error {
		p := filepath.Join(base, kind, digest.Algorithm, digest.Hex[:2], digest.Hex, "data")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, data, 0o644)
	}
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	if err := put("manifests", digest, manifest); err != nil {
		return err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	configName, err := img.ConfigName()
	if err != nil {
		return err
	}
	if err := put("blobs", configName, config); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		if err := put("blobs", d, data); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(base, "manifests", tag), []byte(digest.String()+"\n"), 0o644)
}

// layer is a tar of the tree under root, in a fixed order, symbolic links
// kept as links.
func layer(root string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: int64(info.Mode().Perm()), ModTime: epoch}
		switch {
		case d.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
			return tw.WriteHeader(h)
		case info.Mode()&fs.ModeSymlink != 0:
			h.Typeflag = tar.TypeSymlink
			if h.Linkname, err = os.Readlink(p); err != nil {
				return err
			}
			return tw.WriteHeader(h)
		case !info.Mode().IsRegular():
			return fmt.Errorf("%s: not a file, directory or link", p)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

package oci

import (
	"fmt"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Layer is one layer of an image to build.
type Layer struct {
	// Tree holds the layer's files.
	Tree *Tree
	// CreatedBy says what the layer holds, in the image's history.
	CreatedBy string
}

// Image returns the image of layers, bottom first, on an empty base, for
// linux on this machine's architecture, created at Epoch, with config c
// (entrypoint, environment, labels).
func Image(layers []Layer, c v1.Config) (v1.Image, error) {
	img := empty.Image
	for _, l := range layers {
		layer, err := l.Tree.Layer()
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.CreatedBy, err)
		}
		if img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
			Created:   v1.Time{Time: Epoch},
			CreatedBy: l.CreatedBy,
		}}); err != nil {
			return nil, err
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.Created = v1.Time{Time: Epoch}
	cfg.Config = c
	return mutate.ConfigFile(img, cfg)
}

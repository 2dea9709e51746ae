package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// newLogger returns the stderr logger a role's --log-format (text or json) and
// --log-level (debug, info, warn or error) ask for.
func newLogger(format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
}

// loadConfig decodes the YAML configuration file at path into cfg. Unknown keys are
// errors, so a misspelt setting stops the role at start instead of being ignored. An
// empty path leaves cfg as it is.
func loadConfig(path string, cfg any) error {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// override sets *dst to a flag's value when the flag was given: flags override the
// configuration file.
func override(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

// overrideList is override for a comma-separated list.
func overrideList(dst *[]string, v string) {
	if v != "" {
		*dst = strings.Split(v, ",")
	}
}

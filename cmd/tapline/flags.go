package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// roleFlags are the flags every role (gateway, process, sink, query) shares.
type roleFlags struct {
	config, logFormat, logLevel string
}

func addRoleFlags(cmd *cobra.Command, configHelp string) *roleFlags {
	rf := &roleFlags{}
	f := cmd.Flags()
	f.StringVar(&rf.config, "config", "", configHelp)
	f.StringVar(&rf.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&rf.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return rf
}

// logger builds the role's logger and makes it the default, so libraries that log
// through slog's default logger follow the flags too.
func (rf *roleFlags) logger() (*slog.Logger, error) {
	log, err := newLogger(rf.logFormat, rf.logLevel)
	if err != nil {
		return nil, err
	}
	slog.SetDefault(log)
	return log, nil
}

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

// override sets *dst to a flag's value when the flag was given: flags override the
// configuration file and the environment.
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

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/query/client"
	"github.com/tapline/tapline/query/wire"
	"github.com/tapline/tapline/schemas/textsafe"
)

func init() { register(newSessionsCmd()) }

// apiFlags are the flags of every command that talks to the query API.
type apiFlags struct{ api, token string }

func (f *apiFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.api, "api", "", "query API address (default $"+client.EnvAPI+" or "+client.DefaultAPI+")")
	cmd.Flags().StringVar(&f.token, "token", "", "bearer token (default $"+client.EnvToken+")")
}

func (f *apiFlags) client() (*client.Client, error) { return client.New(f.api, f.token) }

func newSessionsCmd() *cobra.Command {
	var (
		af           apiFlags
		q            client.SessionQuery
		since, until string
		limit        int
		asJSON       bool
	)
	cmd := &cobra.Command{
		Use:   "sessions [--subject S] [--target T] [--protocol P] [--since T] [--until T] [--status S] [--command TEXT]",
		Short: "List and search recorded sessions",
		Long: `List recorded sessions, newest first, from the query API. Auditors see every
session; everyone else their own. --since and --until take a time (RFC 3339), a date,
or a duration back from now (90m, 24h).`,
		Example: `  tapline sessions --since 24h --protocol postgres
  tapline sessions --subject ci-runner --command "drop table" --limit 0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			now := time.Now()
			if q.Since, err = whenFlag("since", since, now); err != nil {
				return err
			}
			if q.Until, err = whenFlag("until", until, now); err != nil {
				return err
			}
			var all []wire.Session
			more := false
			for {
				q.Limit = 1000
				if limit > 0 {
					q.Limit = min(1000, limit-len(all))
				}
				page, err := c.Sessions(cmd.Context(), q)
				if err != nil {
					return err
				}
				all = append(all, page.Sessions...)
				q.Cursor = page.NextCursor
				if q.Cursor == "" {
					break
				}
				if limit > 0 && len(all) >= limit {
					more = true
					break
				}
			}
			if asJSON {
				err = writeSessionsJSON(cmd.OutOrStdout(), all)
			} else {
				writeSessionsTable(cmd.OutOrStdout(), all)
			}
			if more {
				fmt.Fprintf(cmd.ErrOrStderr(), "more sessions match; raise --limit (0 for all)\n")
			}
			return err
		},
	}
	af.add(cmd)
	f := cmd.Flags()
	f.StringVar(&q.Subject, "subject", "", "exact subject (identity) of the agent")
	f.StringVar(&q.Issuer, "issuer", "", "exact token issuer")
	f.StringVar(&q.Target, "target", "", "target name")
	f.StringVar(&q.Protocol, "protocol", "", "postgres, ssh, kubernetes or http")
	f.StringVar(&q.Status, "status", "", "active, ended, denied or abandoned")
	f.StringVar(&q.Command, "command", "", "sessions with a command containing TEXT (case-insensitive)")
	f.StringVar(&since, "since", "", "started at or after: time, date, or duration ago")
	f.StringVar(&until, "until", "", "started before: time, date, or duration ago")
	f.IntVar(&limit, "limit", 50, "sessions to list; 0 lists all")
	f.BoolVar(&asJSON, "json", false, "print one JSON object per line")
	return cmd
}

// whenFlag reads a time flag: RFC 3339, a date, or a duration before now.
func whenFlag(name, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, time.DateOnly, "2006-01-02 15:04:05", "2006-01-02T15:04"} {
		if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--%s %q: want a time (2026-01-02T15:04:05Z), a date (2026-01-02) or a duration ago (24h)", name, v)
}

func writeSessionsJSON(w io.Writer, ss []wire.Session) error {
	enc := json.NewEncoder(w)
	for _, s := range ss {
		if err := enc.Encode(s); err != nil {
			return err
		}
	}
	return nil
}

func writeSessionsTable(w io.Writer, ss []wire.Session) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED\tSESSION\tSUBJECT\tTARGET\tPROTOCOL\tSTATUS\tSIGNED\tCOMMANDS\tDURATION")
	for _, s := range ss {
		// Subject and target come from tokens and agents: escaped, so they cannot
		// rewrite the table on the reader's terminal.
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n",
			s.StartedAt.Local().Format("2006-01-02 15:04:05"), textsafe.Line(s.SessionID), textsafe.Line(s.Subject),
			textsafe.Line(s.Target), textsafe.Line(s.Protocol), textsafe.Line(s.Status), signedColumn(s.SignatureOK),
			s.Commands, sessionDuration(&s))
	}
	tw.Flush()
}

// signedColumn says whether the session's end was signed by a trusted gateway key:
// "-" while it has not ended, "UNTRUSTED" for an invalid signature or one by a key the
// processors were not configured to trust.
func signedColumn(ok *bool) string {
	switch {
	case ok == nil:
		return "-"
	case *ok:
		return "trusted"
	}
	return "UNTRUSTED"
}

func sessionDuration(s *wire.Session) string {
	if s.EndedAt == nil {
		return "-"
	}
	return s.EndedAt.Sub(s.StartedAt).Round(time.Second).String()
}

// stdoutIsTerminal reports whether output goes to a terminal (a character device).
func stdoutIsTerminal() bool {
	fi, err := os.Stdout.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

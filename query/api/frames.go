package api

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/tapline/tapline/query/wire"
	"iter"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tapline/tapline/query/replay"
	"github.com/tapline/tapline/query/verify"
	"github.com/tapline/tapline/schemas"
)

// The API's JSON types live in package wire, which clients import.
type (
	Frame      = wire.Frame
	SessionEnd = wire.SessionEnd
)

func frameOut(f *schemas.Frame) Frame {
	out := Frame{
		SessionID: f.SessionID, Seq: f.Seq, TS: f.TS, Direction: string(f.Direction), Protocol: string(f.Protocol),
		Kind: f.Kind, Channel: f.Channel, Fragment: f.Fragment, Final: f.Final, Payload: f.Payload,
		PayloadSalt: hex.EncodeToString(f.PayloadSalt), PayloadDigest: hex.EncodeToString(f.PayloadDigest),
		PrevHash: hex.EncodeToString(f.PrevHash), Hash: hex.EncodeToString(f.Hash), GatewayID: f.GatewayID,
		Masks: f.Masks, Start: f.Start, Denial: f.Denial,
	}
	if e := f.End; e != nil {
		out.End = &SessionEnd{
			Reason: e.Reason, LastSeq: e.LastSeq, Frames: e.Frames, BytesClient: e.BytesClient, BytesServer: e.BytesServer,
			FinalHash: hex.EncodeToString(e.FinalHash), Signature: hex.EncodeToString(e.Signature), GatewayKey: hex.EncodeToString(e.GatewayKey),
		}
	}
	return out
}

// errStop ends a store walk early because the consumer stopped reading.
var errStop = errors.New("stop")

// frames iterates a session's frames with from <= seq <= to, a store page at a
// time. With follow it keeps polling for new frames until session.end, the follow
// timeout, or the client leaving; a live session replays as it is recorded.
func (s *server) frames(ctx context.Context, id string, from, to int64, follow bool) iter.Seq2[schemas.Frame, error] {
	return func(yield func(schemas.Frame, error) bool) {
		next, ended, stopped := from, false, false
		deadline := time.Now().Add(s.cfg.FollowTimeout)
		for {
			err := s.store.Frames(ctx, id, next, to, func(f *schemas.Frame) error {
				next = f.Seq + 1
				ended = ended || f.Kind == schemas.KindSessionEnd
				if !yield(*f, nil) {
					stopped = true
					return errStop
				}
				return nil
			})
			switch {
			case stopped:
				return
			case err != nil:
				yield(schemas.Frame{}, err)
				return
			case !follow || ended || next > to || time.Now().After(deadline):
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(s.cfg.FollowPoll):
			}
		}
	}
}

type seqRange struct {
	from, to int64
	follow   bool
}

func rangeParams(q url.Values) (seqRange, error) {
	var r seqRange
	var err error
	if r.from, err = int64Param(q, "from", 0); err != nil {
		return r, err
	}
	if r.to, err = int64Param(q, "to", math.MaxInt64); err != nil {
		return r, err
	}
	if r.to < r.from {
		return r, fmt.Errorf("to (%d) is before from (%d)", r.to, r.from)
	}
	r.follow, err = boolParam(q, "follow")
	return r, err
}

func boolParam(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s %q: true or false", name, v)
	}
	return b, nil
}

// streamHeaders starts a streamed response. Errors after this point can only be
// logged and appended; the status line is gone.
func streamHeaders(w http.ResponseWriter, contentType string) func() {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	f, _ := w.(http.Flusher)
	return func() {
		if f != nil {
			f.Flush()
		}
	}
}

func (s *server) streamFrames(w http.ResponseWriter, r *http.Request, c *caller) {
	sess, ok := s.session(w, r, c)
	if !ok {
		return
	}
	rg, err := rangeParams(r.URL.Query())
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	if rg.follow {
		release, ok := s.holdFollow(w, c)
		if !ok {
			return
		}
		defer release()
	}
	flush := streamHeaders(w, "application/x-ndjson")
	bw := bufio.NewWriter(w)
	enc := newFrameJSON()
	var line []byte
	n := 0
	for f, err := range s.frames(r.Context(), sess.SessionID, rg.from, rg.to, rg.follow) {
		if err != nil {
			s.streamError(r, bw, err)
			break
		}
		var err error
		if line, err = enc.append(line[:0], &f); err != nil {
			return
		}
		if _, err := bw.Write(line); err != nil {
			return
		}
		// Flush per page-sized batch, and whenever a follow may wait for more.
		if n++; n%64 == 0 || rg.follow {
			bw.Flush()
			flush()
		}
	}
	bw.Flush()
}

// streamError ends a stream whose status was already sent with an error line.
func (s *server) streamError(r *http.Request, w *bufio.Writer, err error) {
	if r.Context().Err() != nil {
		return
	}
	s.cfg.Logger.ErrorContext(r.Context(), "query api: stream failed", "path", r.URL.Path, "err", err)
	var b ErrorBody
	b.Error.Code, b.Error.Message = "internal", "the recording store failed mid-stream; the output is incomplete"
	json.NewEncoder(w).Encode(b)
}

// replayFlushEvery is how many replay events a whole-session replay writes between
// flushes. Replay writers flush after every event so a followed session reaches the
// reader as it is recorded; a whole session flushed per event spent a write system
// call per statement, more than rendering it. A follow keeps flushing per event:
// its reader waits on each.
const replayFlushEvery = 64

// everyNth calls flush on the first call (the first byte goes out at once) and
// then on every nth.
func everyNth(flush func(), n int) func() {
	calls := 0
	return func() {
		if calls%n == 0 {
			flush()
		}
		calls++
	}
}

func (s *server) replay(w http.ResponseWriter, r *http.Request, c *caller) {
	sess, ok := s.session(w, r, c)
	if !ok {
		return
	}
	q := r.URL.Query()
	format := replay.Format(q.Get("format"))
	if format == "" {
		format = replay.FormatText
	}
	if err := replay.Check(sess.Protocol, format); err != nil {
		badRequest(w, err.Error())
		return
	}
	opt, follow, err := replayOptions(q)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	if follow {
		release, ok := s.holdFollow(w, c)
		if !ok {
			return
		}
		defer release()
	}
	flush := streamHeaders(w, replay.ContentType(format))
	if !follow {
		flush = everyNth(flush, replayFlushEvery)
	}
	frames := s.frames(r.Context(), sess.SessionID, 0, math.MaxInt64, follow)
	if err := replay.Write(w, sess.Protocol, format, frames, opt, flush); err != nil && r.Context().Err() == nil {
		s.cfg.Logger.ErrorContext(r.Context(), "query api: replay failed", "session_id", sess.SessionID, "err", err)
		if format != replay.FormatAsciicast {
			fmt.Fprintf(w, "\nerror: replay incomplete: the recording store failed\n")
		}
	}
}

func replayOptions(q url.Values) (replay.Options, bool, error) {
	var opt replay.Options
	follow, err := boolParam(q, "follow")
	if err != nil {
		return opt, false, err
	}
	for name, dst := range map[string]*int{"max_rows": &opt.MaxRows, "max_cell_bytes": &opt.MaxCellBytes} {
		v, err := int64Param(q, name, 0)
		if err != nil {
			return opt, false, err
		}
		*dst = int(min(v, 1<<20))
	}
	if q.Has("channel") {
		ch, err := strconv.ParseInt(q.Get("channel"), 10, 64)
		if err != nil {
			return opt, false, fmt.Errorf("channel %q: an SSH channel number", q.Get("channel"))
		}
		opt.Channel = &ch
	}
	return opt, follow, nil
}

func (s *server) verify(w http.ResponseWriter, r *http.Request, c *caller) {
	sess, ok := s.session(w, r, c)
	if !ok {
		return
	}
	frames := s.frames(r.Context(), sess.SessionID, 0, math.MaxInt64, false)
	rep, err := verify.Session(sess.SessionID, frames, verify.Options{TrustedKeys: s.cfg.TrustedGatewayKeys, TrustedProcessorKeys: s.cfg.TrustedProcessorKeys})
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// Package stitch turns a session's masked frames into commands — SQL statements with
// their results, SSH exec requests, subsystems, port forwards and shell lines with
// their exit statuses — one protocol at a time. Stitchers are plain values whose
// exported fields are their state, so a processor can save and restore them with the
// session; they are deterministic: the same frames give the same commands.
package stitch

import (
	"sort"

	"github.com/tapline/tapline/schemas"
)

// sortCommands orders commands by their identity (first frame), for deterministic
// output where they come from a map.
func sortCommands(cs []schemas.Command) {
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].CommandSeq != cs[j].CommandSeq {
			return cs[i].CommandSeq < cs[j].CommandSeq
		}
		return cs[i].Channel < cs[j].Channel
	})
}

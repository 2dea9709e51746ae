package postgres

import (
	"reflect"
	"testing"
)

func TestParamColumns(t *testing.T) {
	got := ParamColumns(`SELECT * FROM u WHERE u."email" = $2 AND name LIKE $1; INSERT INTO t(a, "B", c) VALUES ($3, 'x', $4)`)
	want := map[int]string{1: "email", 0: "name", 2: "a", 3: "c"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v want %v", got, want)
	}
	got = ParamColumns(`insert into t (a, b) values ($1, $2)`)
	if !reflect.DeepEqual(got, map[int]string{0: "a", 1: "b"}) {
		t.Errorf("insert: %v", got)
	}
}

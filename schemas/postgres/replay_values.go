package postgres

import (
	"encoding/binary"
	"encoding/hex"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Type OIDs of the built-in types a transcript names and decodes from binary.
const (
	oidBool        = 16
	oidBytea       = 17
	oidName        = 19
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidOID         = 26
	oidJSON        = 114
	oidFloat4      = 700
	oidFloat8      = 701
	oidBPChar      = 1042
	oidVarchar     = 1043
	oidDate        = 1082
	oidTimestamp   = 1114
	oidTimestampTZ = 1184
	oidNumeric     = 1700
	oidUUID        = 2950
	oidJSONB       = 3802
)

var typeNames = map[uint32]string{
	oidBool: "bool", oidBytea: "bytea", oidName: "name", oidInt8: "int8", oidInt2: "int2",
	oidInt4: "int4", oidText: "text", oidOID: "oid", oidJSON: "json", oidFloat4: "float4",
	oidFloat8: "float8", oidBPChar: "bpchar", oidVarchar: "varchar", oidDate: "date",
	oidTimestamp: "timestamp", oidTimestampTZ: "timestamptz", oidNumeric: "numeric",
	oidUUID: "uuid", oidJSONB: "jsonb",
}

// pgEpoch is where Postgres' binary dates and timestamps count from.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// formatValue renders a parameter or column value as text. Text-format values are
// shown as sent; binary ones are decoded for common types and shown as \x-hex
// otherwise, as psql shows bytea.
func formatValue(v []byte, oid uint32, format int16) string {
	if format == 0 {
		if utf8.Valid(v) {
			return string(v)
		}
		return hexValue(v)
	}
	if s, ok := binaryValue(v, oid); ok {
		return s
	}
	return hexValue(v)
}

func hexValue(v []byte) string { return `\x` + hex.EncodeToString(v) }

func binaryValue(v []byte, oid uint32) (string, bool) {
	switch oid {
	case oidBool:
		if len(v) == 1 {
			return map[bool]string{true: "t", false: "f"}[v[0] != 0], true
		}
	case oidInt2:
		if len(v) == 2 {
			return strconv.Itoa(int(int16(binary.BigEndian.Uint16(v)))), true
		}
	case oidInt4:
		if len(v) == 4 {
			return strconv.Itoa(int(int32(binary.BigEndian.Uint32(v)))), true
		}
	case oidOID:
		if len(v) == 4 {
			return strconv.FormatUint(uint64(binary.BigEndian.Uint32(v)), 10), true
		}
	case oidInt8:
		if len(v) == 8 {
			return strconv.FormatInt(int64(binary.BigEndian.Uint64(v)), 10), true
		}
	case oidFloat4:
		if len(v) == 4 {
			return strconv.FormatFloat(float64(math.Float32frombits(binary.BigEndian.Uint32(v))), 'g', -1, 32), true
		}
	case oidFloat8:
		if len(v) == 8 {
			return strconv.FormatFloat(math.Float64frombits(binary.BigEndian.Uint64(v)), 'g', -1, 64), true
		}
	case oidText, oidVarchar, oidName, oidBPChar, oidJSON:
		if utf8.Valid(v) {
			return string(v), true
		}
	case oidJSONB:
		if len(v) > 0 && v[0] == 1 && utf8.Valid(v[1:]) {
			return string(v[1:]), true
		}
	case oidUUID:
		if u, err := uuid.FromBytes(v); err == nil {
			return u.String(), true
		}
	case oidDate:
		if len(v) == 4 {
			days := int32(binary.BigEndian.Uint32(v))
			return pgEpoch.AddDate(0, 0, int(days)).Format("2006-01-02"), true
		}
	case oidTimestamp, oidTimestampTZ:
		if len(v) == 8 {
			us := int64(binary.BigEndian.Uint64(v))
			switch us {
			case math.MaxInt64:
				return "infinity", true
			case math.MinInt64:
				return "-infinity", true
			}
			t := time.UnixMicro(pgEpoch.UnixMicro() + us).UTC()
			if oid == oidTimestampTZ {
				return t.Format("2006-01-02 15:04:05.999999Z07"), true
			}
			return t.Format("2006-01-02 15:04:05.999999"), true
		}
	}
	return "", false
}

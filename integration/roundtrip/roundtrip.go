// Package roundtrip checks that frames survive Kafka unchanged: produced by franz-go
// with the recorder's producer settings (idempotent, acks=all, keyed by session),
// consumed, decoded, and compared per session for order and byte-exact content.
package roundtrip

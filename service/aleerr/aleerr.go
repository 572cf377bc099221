// Package aleerr is the one reader of the ALE error detail
// (ale.v1.ErrorDetail) that alecryptd attaches to Connect errors, for every
// caller that must turn such an error into an ALE answer or show it: the
// gateway, the POS client, alectl and the API's audit.
//
// It only reads: it must never build or rewrite an error, because which
// failure gets which code is decided in one place, alecryptd's API. It is
// separate from service/wire, which knows the protocol but must import
// neither Connect nor generated code.
package aleerr

import (
	"errors"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
)

// Detail returns the ALE detail alecryptd attached to err, if any.
func Detail(err error) (*alev1.ErrorDetail, bool) {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return nil, false
	}
	for _, d := range ce.Details() {
		if v, derr := d.Value(); derr == nil {
			if ed, ok := v.(*alev1.ErrorDetail); ok {
				return ed, true
			}
		}
	}
	return nil, false
}

// Code returns the ALE error code of err's detail, or 0 when it has none.
func Code(err error) int {
	d, _ := Detail(err)
	return int(d.GetErrorCode())
}

// ItemCode returns the Connect code and the ALE code (0 when none) of one
// failed item of a batch or stream, read the way Code reads a whole call's
// error, so a caller maps both alike.
func ItemCode(ie *alev1.ItemError) (connect.Code, int) {
	var c connect.Code
	if err := c.UnmarshalText([]byte(ie.GetCode())); err != nil {
		c = connect.CodeUnknown
	}
	return c, int(ie.GetDetail().GetErrorCode())
}

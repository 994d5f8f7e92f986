// Command orders totals an order; it rejects a line with a quantity below one
// with a function error, so the examples show both a response and an error.
package main

import (
	"context"
	"errors"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"example.com/go-arm-lambda-examples/internal/greet"
)

type item struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
	Cents    int64  `json:"cents"`
}

type order struct {
	Customer string `json:"customer"`
	Items    []item `json:"items"`
}

type receipt struct {
	Greeting   string `json:"greeting"`
	TotalCents int64  `json:"total_cents"`
	Items      int    `json:"items"`
	RequestID  string `json:"request_id"`
}

var errBadQuantity = errors.New("every item needs a quantity of at least 1")

func handle(ctx context.Context, o order) (receipt, error) {
	r := receipt{Greeting: greet.Message(o.Customer)}
	for _, it := range o.Items {
		if it.Quantity < 1 {
			return receipt{}, errBadQuantity
		}
		r.TotalCents += int64(it.Quantity) * it.Cents
		r.Items += it.Quantity
	}
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		r.RequestID = lc.AwsRequestID
	}
	return r, nil
}

func main() {
	lambda.Start(handle)
}

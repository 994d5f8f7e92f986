// Command hello is the smallest useful Lambda function: it greets the caller.
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/lambda"

	"example.com/go-arm-lambda-examples/internal/greet"
)

type request struct {
	Name string `json:"name"`
}

type response struct {
	Message string `json:"message"`
}

func handle(_ context.Context, req request) (response, error) {
	return response{Message: greet.Message(req.Name)}, nil
}

func main() {
	lambda.Start(handle)
}

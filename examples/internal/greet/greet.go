// Package greet is shared by the example functions, so the examples show
// several Lambda functions of one module built together.
package greet

import (
	"fmt"
	"runtime"
)

// Message says hello and where the function runs, which makes an arm64 build
// visible in the response of a smoke invocation.
func Message(name string) string {
	if name == "" {
		name = "world"
	}
	return fmt.Sprintf("hello, %s, from %s/%s", name, runtime.GOOS, runtime.GOARCH)
}

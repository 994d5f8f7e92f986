module example.com/go-arm-lambda-examples

go 1.26

require github.com/aws/aws-lambda-go v1.55.1

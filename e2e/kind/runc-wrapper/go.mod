module iris-operator.dev/runc-wrapper

go 1.22

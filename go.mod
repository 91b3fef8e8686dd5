module github.com/wsbridge/wsbridge

go 1.26.8

require (
	github.com/gorilla/websocket v1.5.3 // indirect
	go.uber.org/goleak v1.3.0 // indirect
)

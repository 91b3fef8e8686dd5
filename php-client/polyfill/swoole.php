<?php

declare(strict_types=1);

/*
 * Stand-ins for Swoole\Http\Request, Swoole\Http\Response, Swoole\WebSocket\Frame and the server
 * classes Swoole\Server, Swoole\Http\Server and Swoole\WebSocket\Server
 * (with the SWOOLE_WEBSOCKET_* constants), declared only when they do not
 * exist (no Swoole extension), so that a Hyperf WebSocket controller that
 * type-hints them runs unchanged under the wsbridge events handler in plain
 * PHP. The server stand-ins only give WsBridge\Events\Server its parent:
 * with Swoole loaded it extends Swoole's own class, whose methods it overrides. They carry the public properties of Swoole's
 * classes (swoole/ide-helper src/swoole/namespace/Http/Request.php and
 * src/swoole/namespace/WebSocket/Frame.php); with Swoole loaded, the handler
 * passes real Swoole objects instead. Loaded by composer ("autoload" "files").
 */

namespace {
    foreach (
        [
            'SWOOLE_WEBSOCKET_OPCODE_TEXT' => 1,
            'SWOOLE_WEBSOCKET_FLAG_FIN' => 1,
            'SWOOLE_WEBSOCKET_FLAG_COMPRESS' => 2,
            'SWOOLE_WEBSOCKET_FLAG_RSV1' => 4,
            'SWOOLE_WEBSOCKET_FLAG_RSV2' => 8,
            'SWOOLE_WEBSOCKET_FLAG_RSV3' => 16,
            'SWOOLE_WEBSOCKET_FLAG_MASK' => 32,
            'SWOOLE_WEBSOCKET_STATUS_ACTIVE' => 3,
            'WEBSOCKET_STATUS_ACTIVE' => 3,
            'SWOOLE_WEBSOCKET_CLOSE_NORMAL' => 1000,
        ] as $wsbridgeName => $wsbridgeValue
    ) {
        if (!\defined($wsbridgeName)) {
            \define($wsbridgeName, $wsbridgeValue);
        }
    }
    unset($wsbridgeName, $wsbridgeValue);
}

namespace Swoole {
    if (!\class_exists(Server::class)) {
        /**
         * A stand-in for Swoole's server (declared because Swoole is not
         * loaded): the parent of WsBridge\Events\Server, which overrides
         * every method it offers.
         */
        class Server
        {
            /** @var array<string, mixed>|null */
            public $setting;

            /** @var iterable<int>|null the open fds */
            public $connections;
        }
    }
}

namespace Swoole\Http {
    if (!\class_exists(Server::class)) {
        /**
         * A stand-in for Swoole's HTTP server (declared because Swoole is not loaded).
         */
        class Server extends \Swoole\Server
        {
        }
    }

    if (!\class_exists(Response::class)) {
        /**
         * A stand-in for Swoole's HTTP response (declared because Swoole is
         * not loaded): under Hyperf's coroutine server, a WebSocket
         * controller's $server is the connection's Swoole\Http\Response.
         * The parent of WsBridge\Events\ConnectionResponse, which overrides
         * every method it offers; it carries the public properties of
         * Swoole's class (swoole/ide-helper src/swoole/Swoole/Http/Response.php).
         */
        class Response
        {
            /** @var int */
            public $fd = 0;

            /** @var object|null */
            public $socket;

            /** @var array<string, string>|null */
            public $header;

            /** @var array<string, string>|null */
            public $cookie;

            /** @var array<string, string>|null */
            public $trailer;
        }
    }

    if (!\class_exists(Request::class)) {
        /**
         * The handshake request of a WebSocket connection held by wsbridge
         * (a stand-in for Swoole's class, declared because Swoole is not loaded).
         */
        class Request
        {
            /** @var int */
            public $fd = 0;

            /** @var int */
            public $streamId = 0;

            /** @var array<string, string>|null lowercase header names */
            public $header;

            /** @var array<string, int|float|string>|null Swoole's server keys */
            public $server;

            /** @var array<string, string>|null */
            public $cookie;

            /** @var array<mixed>|null */
            public $get;

            /** @var array<mixed>|null */
            public $files;

            /** @var array<mixed>|null */
            public $post;

            /** @var array<mixed>|null */
            public $tmpfiles;

            /**
             * @return string|false the method of the handshake (always GET)
             */
            public function getMethod()
            {
                return \is_array($this->server) ? ($this->server['request_method'] ?? false) : false;
            }

            /**
             * @return string|false a handshake has no body
             */
            public function getContent()
            {
                return false;
            }

            /**
             * @return string|false a handshake has no body
             */
            public function rawContent()
            {
                return false;
            }
        }
    }
}

namespace Swoole\WebSocket {
    if (!\class_exists(Server::class)) {
        /**
         * A stand-in for Swoole's WebSocket server (declared because Swoole is
         * not loaded), so that `Swoole\WebSocket\Server $server` type hints and
         * hyperf/engine's WebSocket\Response accept WsBridge\Events\Server.
         */
        class Server extends \Swoole\Http\Server
        {
        }
    }

    if (!\class_exists(Frame::class)) {
        /**
         * A message from a WebSocket client held by wsbridge (a stand-in for
         * Swoole's class, declared because Swoole is not loaded).
         */
        class Frame
        {
            /** @var int */
            public $fd = 0;

            /** @var string */
            public $data = '';

            /** @var int 1 text, 2 binary */
            public $opcode = 1;

            /** @var int SWOOLE_WEBSOCKET_FLAG_FIN (1) for a whole message */
            public $flags = 1;

            /** @var bool */
            public $finish;
        }
    }
}

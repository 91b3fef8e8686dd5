<?php

declare(strict_types=1);

/*
 * Stand-ins for Swoole\Http\Request and Swoole\WebSocket\Frame, declared only
 * when the classes do not exist (no Swoole extension), so that a Hyperf
 * WebSocket controller that type-hints them runs unchanged under the wsbridge
 * events handler in plain PHP. They carry the public properties of Swoole's
 * classes (swoole/ide-helper src/swoole/namespace/Http/Request.php and
 * src/swoole/namespace/WebSocket/Frame.php); with Swoole loaded, the handler
 * passes real Swoole objects instead. Loaded by composer ("autoload" "files").
 */

namespace Swoole\Http {
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

<?php

declare(strict_types=1);

namespace WsBridge\Tests\Hyperf;

use PHPUnit\Framework\TestCase;
use WsBridgeFixtures\Hyperf\TestContainer;
use WsBridge\Events\EventHandler;
use WsBridge\Events\Signature;
use WsBridge\Context\ConnectionContext;
use WsBridge\Context\MemoryContextStore;
use WsBridge\Context\RedisContextStore;
use WsBridge\Hyperf\ConfigProvider;
use WsBridge\Hyperf\ConnectionContextFactory;
use WsBridge\Hyperf\MiddlewareAuthorizer;
use WsBridge\Hyperf\MiddlewareAuthorizerFactory;
use WsBridge\Tests\Support\RedisServer;
use WsBridge\Tests\Support\RecordingController;
use WsBridge\Hyperf\EventHandlerFactory;
use WsBridge\Hyperf\EventsController;
use WsBridge\Hyperf\HyperfSender;
use WsBridge\Hyperf\HyperfSenderFactory;
use WsBridge\Hyperf\SenderFactory;
use WsBridge\Sender;
use WsBridge\Tests\Support\Bridge;
use WsBridge\Tests\Support\RecordingRPC;

/**
 * What Hyperf reads from the package: the ConfigProvider (with and
 * without Hyperf), the factories it binds, the published config file and
 * the events controller.
 */
final class ConfigProviderTest extends TestCase
{
    private const CONFIG = 'Hyperf\Contract\ConfigInterface';

    public static function setUpBeforeClass(): void
    {
        require_once \dirname(__DIR__) . '/fixtures/hyperf/load.php';
    }

    public function testTheArray(): void
    {
        $config = (new ConfigProvider())();
        self::assertSame(['dependencies', 'publish'], \array_keys($config));
        self::assertSame([
            'Hyperf\WebSocketServer\Sender' => HyperfSenderFactory::class,
            Sender::class => SenderFactory::class,
            EventHandler::class => EventHandlerFactory::class,
            ConnectionContext::class => ConnectionContextFactory::class,
            MiddlewareAuthorizer::class => MiddlewareAuthorizerFactory::class,
        ], $config['dependencies']);
        self::assertCount(1, $config['publish']);
        $publish = $config['publish'][0];
        self::assertSame('config', $publish['id']);
        self::assertNotSame('', $publish['description']);
        self::assertFileExists($publish['source']);
        self::assertSame(\realpath(\dirname(__DIR__, 2) . '/publish/wsbridge.php'), \realpath($publish['source']));
        self::assertStringEndsWith('/config/autoload/wsbridge.php', $publish['destination']);
        $composer = \json_decode((string) \file_get_contents(\dirname(__DIR__, 2) . '/composer.json'), true);
        self::assertSame(ConfigProvider::class, $composer['extra']['hyperf']['config'], 'Hyperf finds the provider through composer.json');
        self::assertSame(['php', 'ext-json'], \array_keys($composer['require']), 'no runtime dependencies');
    }

    /**
     * In a process without Hyperf (and without the fixtures): the provider
     * loads and runs, HyperfSender is never declared, and loading it on
     * purpose is a clear, catchable error.
     */
    public function testWithoutHyperf(): void
    {
        $autoload = \dirname(__DIR__, 2) . '/vendor/autoload.php';
        $script = <<<'PHP'
            require $argv[1];
            $config = (new WsBridge\Hyperf\ConfigProvider())();
            $out = [
                'dependencies' => array_keys($config['dependencies']),
                'hyperf' => class_exists('Hyperf\WebSocketServer\Sender', false),
                'declared' => class_exists('WsBridge\Hyperf\HyperfSender', false),
                'factory' => class_exists('WsBridge\Hyperf\HyperfSenderFactory'),
                'swoole polyfill' => (new ReflectionClass('Swoole\Http\Request'))->getFileName() !== false,
                'handler' => WsBridge\Events\EventHandler::create(new class () { public function onMessage($s, $f): void {} }, WsBridge\Sender::create())->maxBodySize(),
            ];
            try {
                class_exists('WsBridge\Hyperf\HyperfSender');
                $out['load'] = 'loaded';
            } catch (Error $e) {
                $out['load'] = $e->getMessage();
            }
            echo json_encode($out);
            PHP;
        $cmd = [\PHP_BINARY, '-d', 'display_errors=stderr', '-r', $script, $autoload];
        $process = \proc_open($cmd, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
        $stdout = \stream_get_contents($pipes[1]);
        $stderr = \stream_get_contents($pipes[2]);
        self::assertSame(0, \proc_close($process), $stderr);
        self::assertSame([
            'dependencies' => ['Hyperf\WebSocketServer\Sender', Sender::class, EventHandler::class, ConnectionContext::class,
                MiddlewareAuthorizer::class],
            'hyperf' => false,
            'declared' => false,
            'factory' => true,
            'swoole polyfill' => true,
            'handler' => EventHandler::DEFAULT_MAX_BODY_SIZE,
            'load' => 'Class "Hyperf\WebSocketServer\Sender" not found',
        ], \json_decode((string) $stdout, true), $stdout . $stderr);
    }

    /**
     * @param array<string, mixed> $wsbridge
     */
    /**
     * @param array<string, mixed> $wsbridge
     * @param array<string, mixed> $other other keys of Hyperf's config, e.g. server.type
     */
    private static function config(array $wsbridge, array $other = []): object
    {
        return new class ($wsbridge, $other) {
            public function __construct(private readonly array $wsbridge, private readonly array $other)
            {
            }

            public function get(string $key, mixed $default = null): mixed
            {
                return $key === 'wsbridge' ? $this->wsbridge : ($this->other[$key] ?? $default);
            }
        };
    }

    /**
     * A container wired as Hyperf wires it from the ConfigProvider.
     *
     * @param array<string, mixed> $wsbridge
     * @param array<string, mixed> $more
     * @param array<string, mixed> $other
     */
    private static function container(array $wsbridge, array $more = [], array $other = []): TestContainer
    {
        $entries = [self::CONFIG => self::config($wsbridge, $other)];
        foreach ((new ConfigProvider())()['dependencies'] as $id => $factory) {
            $entries[$id] = static fn (TestContainer $c): object => (new $factory())($c);
        }
        return new TestContainer($more + $entries);
    }

    public function testSenderFactoryReadsTheRpcSection(): void
    {
        $bridge = new Bridge();
        try {
            $c = self::container(['rpc' => ['address' => $bridge->rpcAddr, 'read_timeout' => 2, 'strict' => true]]);
            $sender = $c->get(Sender::class);
            self::assertInstanceOf(Sender::class, $sender);
            self::assertTrue($sender->isStrict());
            self::assertFalse($sender->check(1), 'it talks to the configured bridge');
            $hyperf = $c->get('Hyperf\WebSocketServer\Sender');
            self::assertInstanceOf(HyperfSender::class, $hyperf);
            self::assertSame($sender, $hyperf->bridge());
            self::assertFalse($hyperf->check(1));
        } finally {
            self::assertSame(0, $bridge->stop());
        }
        $defaults = self::container([])->get(Sender::class);
        self::assertFalse($defaults->isStrict());
    }

    public function testEventHandlerFactoryAndEventsController(): void
    {
        $rpc = new RecordingRPC();
        $logger = new class () {
            /** @var list<string> */
            public array $lines = [];

            public function error(string $m, array $c = []): void
            {
                $this->lines[] = "error {$m}";
            }

            public function warning(string $m, array $c = []): void
            {
                $this->lines[] = "warning {$m}";
            }
        };
        $controller = new \App\Controller\WebSocketController();
        $c = self::container([
            'events' => [
                'controller' => \App\Controller\WebSocketController::class,
                'secret' => 'hyperf-secret',
                'max_body_size' => 4096,
                'tolerance' => 60,
                'authorizer' => static fn ($request): array => ['allow' => true, 'user' => $request->get['uid'] ?? 'anonymous'],
                'deduplicate' => true,
            ],
        ], [
            Sender::class => new Sender($rpc),
            \App\Controller\WebSocketController::class => $controller,
            EventHandlerFactory::LOGGER => $logger,
        ]);
        $handler = $c->get(EventHandler::class);
        self::assertTrue($handler->isSigned());
        self::assertSame(4096, $handler->maxBodySize());

        $request = static function (string $kind, string $body, int $ts): object {
            return new class ($kind, $body, $ts) {
                public function __construct(private string $kind, private string $body, private int $ts)
                {
                }

                public function getBody(): object
                {
                    return new class ($this->body) {
                        public function __construct(private string $body)
                        {
                        }

                        public function __toString(): string
                        {
                            return $this->body;
                        }
                    };
                }

                /** @return array<string, list<string>> PSR-7's shape */
                public function getHeaders(): array
                {
                    return [
                        'Content-Type' => ['application/json'],
                        'X-Wsbridge-Kind' => [$this->kind],
                        'X-Wsbridge-Timestamp' => [(string) $this->ts],
                        'X-Wsbridge-Signature' => [Signature::sign('hyperf-secret', $this->ts, $this->body)],
                    ];
                }
            };
        };
        $c->set(EventsController::RESPONSE, new class () {
            public function raw(mixed $data): object
            {
                return new class ((string) $data) {
                    public int $status = 200;
                    /** @var array<string, string> */
                    public array $headers = ['Content-Type' => 'text/plain'];

                    public function __construct(public string $body)
                    {
                    }

                    public function withStatus(int $code, string $reasonPhrase = ''): static
                    {
                        $clone = clone $this;
                        $clone->status = $code;
                        return $clone;
                    }

                    public function withHeader(string $name, $value): static
                    {
                        $clone = clone $this;
                        $clone->headers[$name] = $value;
                        return $clone;
                    }
                };
            }
        });
        $endpoint = new EventsController($c);
        $batch = '{"node":0,"events":[{"type":"open","fd":3,"seq":1,"time":5000,"path":"/ws","query":"uid=9","headers":{},"remote_addr":"10.0.0.1:1"},{"type":"message","fd":3,"seq":2,"time":5001,"opcode":1,"data":"boom"}]}';

        $c->set(EventsController::REQUEST, $request('events', $batch, \time()));
        $response = $endpoint->handle();
        self::assertSame(204, $response->status);
        // Redelivered: deduplicate skips what this worker dispatched already.
        self::assertSame(204, $endpoint->handle()->status);
        self::assertSame(['open', 'message'], \array_column($controller->received, 'event'));
        self::assertSame(['Sender.Push {"fd":3,"data":"Opened","opcode":1,"finish":true}'], $rpc->lines());
        self::assertSame(['error wsbridge: the message event of fd 3 (seq 2) failed: RuntimeException: the controller failed on purpose'], $logger->lines);

        $c->set(EventsController::REQUEST, $request('events', $batch, \time() - 61));
        $response = $endpoint->handle();
        self::assertSame(401, $response->status);
        self::assertSame('application/json', $response->headers['Content-Type']);

        $c->set(EventsController::REQUEST, $request('auth', '{"node":0,"path":"/ws","query":"uid=9","remote_addr":"10.0.0.1:1"}', \time()));
        $response = $endpoint->handle();
        self::assertSame(200, $response->status);
        self::assertSame('{"allow":true,"user":"9"}', $response->body);
        self::assertSame('application/json', $response->headers['Content-Type']);
    }

    public function testEventHandlerFactoryNeedsAController(): void
    {
        $this->expectException(\WsBridge\Exception\ConfigurationException::class);
        $this->expectExceptionMessage('wsbridge.events.controller is not set');
        self::container([])->get(EventHandler::class);
    }

    public function testThePublishedConfig(): void
    {
        $previous = \getenv('WSBRIDGE_RPC_ADDR');
        \putenv('WSBRIDGE_RPC_ADDR');
        \putenv('WSBRIDGE_EVENTS_SECRET');
        $file = \dirname(__DIR__, 2) . '/publish/wsbridge.php';
        $config = require $file;
        self::assertSame('tcp://127.0.0.1:6001', $config['rpc']['address']);
        self::assertSame('', $config['events']['secret']);
        self::assertSame(8 << 20, $config['events']['max_body_size']);
        self::assertSame(300, $config['events']['tolerance']);
        self::assertTrue($config['events']['deduplicate']);
        \putenv('WSBRIDGE_RPC_ADDR=unix:///run/wsbridge/rpc.sock');
        \putenv('WSBRIDGE_EVENTS_SECRET=s3cret');
        $config = require $file;
        \putenv($previous === false ? 'WSBRIDGE_RPC_ADDR' : "WSBRIDGE_RPC_ADDR={$previous}");
        \putenv('WSBRIDGE_EVENTS_SECRET');
        self::assertSame('unix:///run/wsbridge/rpc.sock', $config['rpc']['address']);
        self::assertSame('s3cret', $config['events']['secret']);

        // Its keys are the ones the factories read.
        $c = self::container($config, [\App\Controller\WebSocketController::class => new \App\Controller\WebSocketController(), Sender::class => new Sender(new RecordingRPC())]);
        $handler = $c->get(EventHandler::class);
        self::assertTrue($handler->isSigned());
        self::assertSame('auto', $config['events']['server_style']);
        self::assertSame(EventHandler::STYLE_ASYNC, $handler->serverStyle(), 'auto, under Hyperf\'s default server');
    }

    /**
     * wsbridge.events.server_style, or (auto) Hyperf's server.type:
     * Hyperf\Server\CoroutineServer gives controllers the connection's
     * Swoole\Http\Response as $server.
     */
    public function testTheServerStyle(): void
    {
        $controller = new RecordingController();
        $more = ['ws' => $controller, Sender::class => new Sender(new RecordingRPC())];
        $style = static fn (array $events, array $other = []): string => self::container(['events' => ['controller' => 'ws'] + $events], $more, $other)
            ->get(EventHandler::class)->serverStyle();
        self::assertSame('async', $style([]));
        self::assertSame('async', $style(['server_style' => 'auto'], ['server.type' => 'Hyperf\Server\Server']));
        self::assertSame('coroutine', $style([], ['server.type' => 'Hyperf\Server\CoroutineServer']));
        self::assertSame('coroutine', $style(['server_style' => 'auto'], ['server.type' => '\Hyperf\Server\CoroutineServer']));
        self::assertSame('coroutine', $style(['server_style' => 'coroutine']));
        self::assertSame('async', $style(['server_style' => 'async'], ['server.type' => 'Hyperf\Server\CoroutineServer']));

        $handler = self::container(['events' => ['controller' => 'ws', 'server_style' => 'coroutine']], $more)->get(EventHandler::class);
        $batch = '{"node":0,"events":[{"type":"open","fd":4,"seq":1,"time":5,"path":"/","query":"","headers":{},"remote_addr":"10.0.0.1:1"}]}';
        self::assertSame(204, $handler->handle($batch, ['X-Wsbridge-Kind' => 'events'])->status);
        self::assertInstanceOf(\Swoole\Http\Response::class, $controller->calls[0][1] ?? null);
        self::assertSame(4, $controller->calls[0][1]->fd);

        self::assertTrue((require \dirname(__DIR__, 2) . '/publish/wsbridge.php')['events']['handshake_request']);
        foreach ([false, true, null] as $value) {
            self::assertInstanceOf(EventHandler::class, self::container(['events' => ['controller' => 'ws', 'handshake_request' => $value]], $more)->get(EventHandler::class));
        }
        try {
            self::container(['events' => ['controller' => 'ws', 'handshake_request' => 'ws']], $more)->get(EventHandler::class);
            self::fail('a class that is not invokable');
        } catch (\WsBridge\Exception\ConfigurationException $e) {
            self::assertStringContainsString('handshake_request', $e->getMessage());
        }

        $this->expectException(\WsBridge\Exception\ConfigurationException::class);
        $style(['server_style' => 'process']);
    }

    public function testRoutesAndSharedStoresFromTheConfig(): void
    {
        $redis = new RedisServer();
        $chat = new RecordingController();
        $admin = new RecordingController();
        $rpc = new RecordingRPC();
        $c = self::container([
            'events' => [
                'controller' => 'chat',
                'controllers' => ['/admin' => 'admin'],
                'deduplicate' => 'redis',
                'lease' => 5,
            ],
            'context' => ['store' => 'redis', 'ttl' => 100],
            'redis' => ['url' => $redis->url, 'prefix' => 'cfg-test'],
        ], ['chat' => $chat, 'admin' => $admin, Sender::class => new Sender($rpc)]);
        $context = $c->get(ConnectionContext::class);
        self::assertInstanceOf(RedisContextStore::class, $context->store());
        $handler = $c->get(EventHandler::class);
        self::assertSame($context, $handler->context());
        $batch = '{"node":0,"events":[{"type":"open","fd":4,"seq":1,"time":5,"path":"/admin","query":"","headers":{},"remote_addr":"10.0.0.1:1"},'
            . '{"type":"message","fd":4,"seq":2,"time":6,"opcode":1,"data":"hi"}]}';
        self::assertSame(204, $handler->handle($batch, ['X-Wsbridge-Kind' => 'events'])->status);
        self::assertSame(204, $handler->handle($batch, ['X-Wsbridge-Kind' => 'events'])->status);
        self::assertSame(['open 4', 'message 4 hi'], $admin->summary(), 'routed, and the redelivery skipped through Redis');
        self::assertSame([], $chat->summary());
        self::assertSame('/admin', $context->get(EventHandler::PATH_KEY, null, 4), 'kept in Redis for the other workers');

        $memory = self::container(['context' => []])->get(ConnectionContext::class);
        self::assertInstanceOf(MemoryContextStore::class, $memory->store());
        $this->expectException(\WsBridge\Exception\ConfigurationException::class);
        self::container(['context' => ['store' => 'files']])->get(ConnectionContext::class);
    }
}

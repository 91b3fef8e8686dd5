<?php

declare(strict_types=1);

namespace WsBridge\Hyperf;

use Psr\Container\ContainerInterface;
use Swoole\Http\Request;
use WsBridge\Events\AuthResult;
use WsBridge\Exception\ConfigurationException;

/**
 * Handshake authorization by the application's PSR-15 middlewares (what its
 * `middlewares.ws` ran on Hyperf's handshake): the bridge's auth request is
 * turned into a PSR-7 request of the handshake (its headers, cookies and
 * query), passed through the middlewares in order, and:
 *
 * - a middleware that answers itself (a response of its own) refuses the
 *   handshake with that response's status (4xx/5xx; other statuses: 403)
 *   and body as the message;
 * - a middleware that throws an exception with getStatusCode() (Hyperf's
 *   HttpException, e.g. UnauthorizedHttpException) refuses it with that
 *   status; any other exception is the authorizer failing (the bridge
 *   refuses the handshake with 503);
 * - a request that gets through every middleware is allowed, bound to the
 *   user in its attribute "wsbridge.user" and the groups in
 *   "wsbridge.groups", if a middleware set them.
 *
 * In config/autoload/wsbridge.php: 'authorizer' => MiddlewareAuthorizer::class,
 * and 'handshake_middlewares' (the `middlewares.ws` list by default).
 */
final class MiddlewareAuthorizer
{
    public const USER = 'wsbridge.user';
    public const GROUPS = 'wsbridge.groups';
    /** Hyperf's PSR-7 implementation, named as strings: Hyperf may be absent. */
    public const HYPERF_REQUEST = 'Hyperf\HttpMessage\Server\Request';
    public const HYPERF_RESPONSE = 'Hyperf\HttpMessage\Server\Response';

    /** @var \Closure(Request): object */
    private readonly \Closure $toRequest;
    /** @var \Closure(): object */
    private readonly \Closure $newResponse;

    /**
     * @param list<string|object> $middlewares classes the container makes, or instances
     * @param (\Closure(Request): object)|null $toRequest the handshake as a PSR-7 ServerRequestInterface
     *        (default: Hyperf's Request::loadFromSwooleRequest)
     * @param (\Closure(): object)|null $newResponse an empty PSR-7 response (default: Hyperf's Response)
     */
    public function __construct(
        private readonly ContainerInterface $container,
        private readonly array $middlewares,
        ?\Closure $toRequest = null,
        ?\Closure $newResponse = null,
    ) {
        $this->toRequest = $toRequest ?? static function (Request $handshake): object {
            if (!\class_exists(self::HYPERF_REQUEST)) {
                throw new ConfigurationException('MiddlewareAuthorizer needs hyperf/http-message (or a request factory)');
            }
            return (self::HYPERF_REQUEST)::loadFromSwooleRequest($handshake);
        };
        $this->newResponse = $newResponse ?? static function (): object {
            if (!\class_exists(self::HYPERF_RESPONSE)) {
                throw new ConfigurationException('MiddlewareAuthorizer needs hyperf/http-message (or a response factory)');
            }
            $class = self::HYPERF_RESPONSE;
            return new $class();
        };
    }

    public function __invoke(Request $handshake): AuthResult
    {
        $middlewares = [];
        foreach ($this->middlewares as $m) {
            $middlewares[] = \is_string($m) ? $this->container->get($m) : $m;
        }
        $pipeline = new HandshakePipeline($middlewares, $this->newResponse);
        try {
            $response = $pipeline->handle(($this->toRequest)($handshake));
        } catch (\Throwable $e) {
            if (\is_callable([$e, 'getStatusCode'])) {
                $status = (int) $e->getStatusCode();
                return AuthResult::deny($status >= 400 && $status < 600 ? $status : 403, self::message($e->getMessage()));
            }
            throw $e;
        }
        $reached = $pipeline->reached();
        if ($reached !== null && $response === $pipeline->allowed()) {
            $user = $reached->getAttribute(self::USER);
            $groups = $reached->getAttribute(self::GROUPS, []);
            return AuthResult::allow($user === null ? null : (string) $user, \is_array($groups) ? \array_values($groups) : []);
        }
        $status = (int) $response->getStatusCode();
        return AuthResult::deny($status >= 400 && $status < 600 ? $status : 403, self::message((string) $response->getBody()));
    }

    private static function message(string $text): string
    {
        $text = \trim($text);
        if ($text === '' || \preg_match('//u', $text) !== 1) {
            return 'refused by the handshake middleware';
        }
        return \mb_substr($text, 0, 200);
    }
}

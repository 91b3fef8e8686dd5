<?php

declare(strict_types=1);

namespace WsBridge\Hyperf;

use Psr\Container\ContainerInterface;
use WsBridge\Events\EventHandler;

/**
 * The HTTP endpoint the bridge posts events and auth requests to
 * (WSBRIDGE_EVENTS_URL, WSBRIDGE_EVENTS_AUTH_URL). In config/routes.php:
 *
 *   Router::post('/wsbridge/events', [\WsBridge\Hyperf\EventsController::class, 'handle']);
 *
 * It reads the request and answers through Hyperf's request and response
 * proxies (Hyperf\HttpServer\Contract\RequestInterface and
 * ResponseInterface), which the container resolves per coroutine.
 */
class EventsController
{
    public const REQUEST = 'Hyperf\HttpServer\Contract\RequestInterface';
    public const RESPONSE = 'Hyperf\HttpServer\Contract\ResponseInterface';

    public function __construct(private readonly ContainerInterface $container)
    {
    }

    /**
     * @return mixed a Psr\Http\Message\ResponseInterface
     */
    public function handle(): mixed
    {
        $request = $this->container->get(self::REQUEST);
        $result = $this->container->get(EventHandler::class)->handle((string) $request->getBody(), $request->getHeaders());
        $response = $this->container->get(self::RESPONSE)->raw($result->body)->withStatus($result->status);
        foreach ($result->headers as $name => $value) {
            $response = $response->withHeader($name, $value);
        }
        return $response;
    }
}

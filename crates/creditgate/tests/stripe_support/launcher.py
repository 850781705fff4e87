"""localstripe (PyPI, 1.15.10) for black-box tests, extended with Checkout Sessions.

Usage: python launcher.py --port PORT --data-dir DIR

- Serves localstripe's own aiohttp `app` on 127.0.0.1 only (PORT 0 picks a free port).
- localstripe pickles its store to the fixed /tmp/localstripe.pickle on every write; here it goes
  to DIR/localstripe.pickle instead, and the store always starts empty.
- Adds, with localstripe's auth, error handling and store:
    POST /v1/checkout/sessions           (mode=payment only; unknown params -> 400)
    GET  /v1/checkout/sessions/{id}
    GET  /v1/checkout/sessions
    POST /v1/checkout/sessions/{id}/expire
  and, for tests only:
    POST /_test/checkout/sessions/{id}/complete   payment_method=pm_... [three_d_secure=pass|fail]
         pays the session with a PaymentIntent made by localstripe's own classes and emits a
         signed `checkout.session.completed` event through localstripe's webhooks
    GET  /_test/checkout/{id}                     a tiny HTML page (no API key needed): the session's `url`
- Prints `ready http://127.0.0.1:PORT` (flushed) once listening.
"""

import argparse
import asyncio
import html
import logging
import os
import pickle
import re
import socket
import sys
import time

from aiohttp import web

from localstripe import resources, server
from localstripe.errors import UserError
from localstripe.resources import (
    Customer,
    Event,
    PaymentIntent,
    PaymentMethod,
    StripeObject,
    try_convert_to_int,
)
from localstripe.webhooks import schedule_webhook

# ---------------------------------------------------------------------------------------------
# The store: a private file instead of /tmp/localstripe.pickle, never loaded (start from scratch)
# ---------------------------------------------------------------------------------------------

_store_path = None


def _try_load_from_disk(self):
    # Every run starts from scratch.
    pass


def _dump_to_disk(self):
    if _store_path is None:
        return
    tmp = _store_path + '.tmp'
    with open(tmp, 'wb') as f:
        pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, _store_path)


resources.Store.try_load_from_disk = _try_load_from_disk
resources.Store.dump_to_disk = _dump_to_disk

# The launcher's own address, known once it listens (the sessions' `url`).
_base_url = 'http://127.0.0.1'


# ---------------------------------------------------------------------------------------------
# Checkout Sessions
# ---------------------------------------------------------------------------------------------


def _bad(param, message=None, code='parameter_invalid'):
    return UserError(400, message or ('Invalid ' + param),
                     {'code': code, 'param': param})


def _unexpected(prefix, keys):
    names = [prefix + '[' + k + ']' if prefix else k for k in keys]
    return UserError(400, 'Unexpected ' + ', '.join(names),
                     {'code': 'parameter_unknown', 'param': names[0]})


def _check_keys(prefix, value, allowed):
    if type(value) is not dict:
        raise _bad(prefix)
    unknown = [k for k in value.keys() if k not in allowed]
    if unknown:
        raise _unexpected(prefix, unknown)


def _check_metadata(param, metadata):
    if metadata is None:
        return {}
    if type(metadata) is not dict:
        raise _bad(param)
    out = {}
    for key, value in metadata.items():
        if type(value) not in (str, int):
            raise _bad(param + '[' + str(key) + ']')
        out[str(key)] = str(value)
    return out


def _check_str(param, value, required=False):
    if value is None:
        if required:
            raise _bad(param, 'Missing required param: ' + param,
                       'parameter_missing')
        return None
    if type(value) is not str or not value:
        raise _bad(param)
    return value


class CheckoutSession(StripeObject):
    """A Stripe `checkout.session` in `payment` mode, stored like localstripe's own objects.

    Every attribute not starting with `_` is exported, so there are no public methods."""

    object = 'checkout.session'
    _id_prefix = 'cs_test_'

    def __init__(self, mode=None, customer=None, success_url=None,
                 cancel_url=None, client_reference_id=None, metadata=None,
                 line_items=None, payment_intent_data=None, **kwargs):
        if kwargs:
            raise _unexpected('', list(kwargs.keys()))

        if mode is None:
            raise _bad('mode', 'Missing required param: mode',
                       'parameter_missing')
        if mode != 'payment':
            raise _bad('mode', 'Only mode=payment is supported')
        if customer is not None:
            if type(customer) is not str or not customer.startswith('cus_'):
                raise _bad('customer')
        success_url = _check_str('success_url', success_url, required=True)
        if not re.match(r'^https?://', success_url):
            raise _bad('success_url', 'Not a valid URL')
        cancel_url = _check_str('cancel_url', cancel_url)
        if cancel_url is not None and not re.match(r'^https?://', cancel_url):
            raise _bad('cancel_url', 'Not a valid URL')
        client_reference_id = _check_str('client_reference_id',
                                         client_reference_id)
        if client_reference_id is not None and len(client_reference_id) > 200:
            raise _bad('client_reference_id')
        metadata = _check_metadata('metadata', metadata)

        if line_items is None:
            raise _bad('line_items', 'Missing required param: line_items',
                       'parameter_missing')
        if type(line_items) is not list or not line_items:
            raise _bad('line_items')
        items = []
        for i, item in enumerate(line_items):
            p = 'line_items[%d]' % i
            _check_keys(p, item, ('price_data', 'quantity'))
            if 'price_data' not in item:
                raise _bad(p + '[price_data]',
                           'Missing required param: ' + p + '[price_data]',
                           'parameter_missing')
            price = item['price_data']
            pp = p + '[price_data]'
            _check_keys(pp, price, ('currency', 'unit_amount', 'product_data'))
            currency = price.get('currency')
            if type(currency) is not str or \
                    not re.match(r'^[a-z]{3}$', currency):
                raise _bad(pp + '[currency]')
            unit_amount = try_convert_to_int(price.get('unit_amount'))
            if type(unit_amount) is not int or unit_amount < 0:
                raise _bad(pp + '[unit_amount]')
            product = price.get('product_data')
            _check_keys(pp + '[product_data]', product, ('name', ))
            name = _check_str(pp + '[product_data][name]', product.get('name'),
                              required=True)
            quantity = try_convert_to_int(item.get('quantity'))
            if type(quantity) is not int or quantity < 1:
                raise _bad(p + '[quantity]')
            items.append({'currency': currency, 'unit_amount': unit_amount,
                          'name': name, 'quantity': quantity})
        currencies = set(item['currency'] for item in items)
        if len(currencies) != 1:
            raise _bad('line_items', 'All line items must use one currency')
        amount_total = sum(item['unit_amount'] * item['quantity']
                           for item in items)
        if amount_total < 1:
            raise _bad('line_items', 'The total amount must be positive')

        if payment_intent_data is None:
            payment_intent_data = {}
        _check_keys('payment_intent_data', payment_intent_data,
                    ('setup_future_usage', 'metadata'))
        setup_future_usage = payment_intent_data.get('setup_future_usage')
        if setup_future_usage not in (None, 'off_session', 'on_session'):
            raise _bad('payment_intent_data[setup_future_usage]')
        pi_metadata = _check_metadata('payment_intent_data[metadata]',
                                      payment_intent_data.get('metadata'))

        if customer is not None:
            Customer._api_retrieve(customer)  # 404 if it does not exist

        # All exceptions must be raised before this point.
        super().__init__()

        self.mode = mode
        self.url = '%s/_test/checkout/%s' % (_base_url, self.id)
        self.status = 'open'
        self.payment_status = 'unpaid'
        self.amount_subtotal = amount_total
        self.amount_total = amount_total
        self.currency = items[0]['currency']
        self.customer = customer
        self.client_reference_id = client_reference_id
        self.metadata = metadata
        self.payment_intent = None
        self.payment_method_types = ['card']
        self.success_url = success_url
        self.cancel_url = cancel_url
        self.expires_at = self.created + 24 * 3600

        self._line_items = items
        self._setup_future_usage = setup_future_usage
        self._payment_intent_metadata = pi_metadata

    @classmethod
    def _api_update(cls, id, **data):
        raise UserError(405, 'Method Not Allowed')

    @classmethod
    def _api_delete(cls, id):
        raise UserError(405, 'Method Not Allowed')

    @classmethod
    def _api_expire(cls, id, **kwargs):
        if kwargs:
            raise _unexpected('', list(kwargs.keys()))
        obj = cls._api_retrieve(id)
        if obj.status != 'open':
            raise UserError(400, 'Only open Checkout Sessions can be expired',
                            {'code': 'checkout_session_not_open'})
        obj.status = 'expired'
        schedule_webhook(Event('checkout.session.expired', obj))
        return obj

    @classmethod
    def _api_complete(cls, id, payment_method=None, three_d_secure=None,
                      **kwargs):
        """Pays the session as its customer would on the hosted page."""
        if kwargs:
            raise _unexpected('', list(kwargs.keys()))
        if type(payment_method) is not str or not (
                payment_method.startswith('pm_') or
                payment_method.startswith('card_') or
                payment_method.startswith('src_')):
            raise _bad('payment_method',
                       'Missing or invalid param: payment_method')
        if three_d_secure not in (None, 'pass', 'fail'):
            raise _bad('three_d_secure')

        obj = cls._api_retrieve(id)
        if obj.status != 'open':
            raise UserError(400, 'This Checkout Session is not open',
                            {'code': 'checkout_session_not_open'})

        # Resolves test ids such as pm_card_visa into a stored PaymentMethod (404 if unknown).
        pm = PaymentMethod._api_retrieve(payment_method)
        if getattr(pm, 'type', None) != 'card':
            raise _bad('payment_method', 'Only card payment methods are supported')
        if obj.customer is not None and pm.id.startswith('pm_') and \
                pm.customer != obj.customer:
            # 402 card_declined for cards that decline on attach.
            PaymentMethod._api_attach(pm.id, customer=obj.customer)

        pi = PaymentIntent._api_create(
            amount=obj.amount_total,
            currency=obj.currency,
            customer=obj.customer,
            payment_method=pm.id,
            metadata=dict(obj._payment_intent_metadata))
        # Raises 402 (localstripe's error body) when the card declines.
        pi._confirm(on_failure_now=pi._report_failure)
        if pi.status == 'requires_action':
            # The customer's 3-D Secure challenge on the hosted page.
            success = three_d_secure != 'fail'
            PaymentIntent._api_authenticate(pi.id, client_secret=pi.client_secret,
                                            success=success)
            if not success:
                raise UserError(402, pi.last_payment_error['message'], {
                    'code': 'payment_intent_authentication_failure',
                    'payment_intent': pi.id})
        if pi.status != 'succeeded':
            raise UserError(402, 'The payment did not succeed (%s)' % pi.status,
                            {'code': 'payment_failed', 'payment_intent': pi.id})

        obj.status = 'complete'
        obj.payment_status = 'paid'
        obj.payment_intent = pi.id
        schedule_webhook(Event('checkout.session.completed', obj))
        return obj


async def _complete(request):
    data = await server.get_post_data(request) or {}
    data.pop('expand', None)
    obj = CheckoutSession._api_complete(request.match_info['id'], **data)
    return server.json_response(obj._export())


async def _page(request):
    try:
        obj = CheckoutSession._api_retrieve(request.match_info['id'])
    except UserError:
        return web.Response(status=404, text='No such Checkout Session\n')
    amount = '%d.%02d %s' % (obj.amount_total // 100, obj.amount_total % 100,
                             obj.currency.upper())
    rows = ''.join('<li>%d &times; %s</li>' % (item['quantity'],
                                              html.escape(item['name']))
                   for item in obj._line_items)
    body = ('<!doctype html><html><head><meta charset="utf-8">'
            '<title>Checkout %s</title></head><body>'
            '<h1>Test checkout</h1><p>Session <code>%s</code>: %s, status '
            '<b>%s</b>, payment <b>%s</b>.</p><ul>%s</ul>'
            '<p>Tests pay it with <code>POST /_test/checkout/sessions/%s/complete'
            '</code> and <code>payment_method=pm_card_visa</code>.</p>'
            '</body></html>\n') % (
                html.escape(obj.id), html.escape(obj.id), amount,
                html.escape(obj.status), html.escape(obj.payment_status), rows,
                html.escape(obj.id))
    return web.Response(text=body, content_type='text/html')


@web.middleware
async def _auth_middleware(request, handler):
    # The hosted page is opened by browsers, which carry no API key.
    if request.method == 'GET' and request.path.startswith('/_test/checkout/'):
        return await handler(request)
    return await server.auth_middleware(request, handler)


app = server.app
app.middlewares[app.middlewares.index(server.auth_middleware)] = \
    _auth_middleware
app.router.add_post('/_test/checkout/sessions/{id}/complete', _complete)
app.router.add_get('/_test/checkout/{id}', _page)
app.router.add_post('/v1/checkout/sessions/{id}/expire',
                    server.api_extra(CheckoutSession._api_expire,
                                     '/v1/checkout/sessions/{id}/expire'))
for _method, _url, _func in (
        ('POST', '/v1/checkout/sessions', server.api_create),
        ('GET', '/v1/checkout/sessions/{id}', server.api_retrieve),
        ('GET', '/v1/checkout/sessions', server.api_list_all)):
    app.router.add_route(_method, _url, _func(CheckoutSession, _url))


# ---------------------------------------------------------------------------------------------
# Serving on 127.0.0.1
# ---------------------------------------------------------------------------------------------


async def _serve(port, logger):
    global _base_url
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(('127.0.0.1', port))
    runner = web.AppRunner(app, access_log=logger)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    _base_url = 'http://127.0.0.1:%d' % sock.getsockname()[1]
    print('ready ' + _base_url, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--data-dir', required=True)
    args = parser.parse_args()

    global _store_path
    os.makedirs(args.data_dir, exist_ok=True)
    _store_path = os.path.join(args.data_dir, 'localstripe.pickle')

    logger = logging.getLogger('aiohttp.access')
    logger.setLevel(logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter('%(asctime)s %(message)s'))
    logger.addHandler(handler)
    logger.info('localstripe launcher pid %d started at %d', os.getpid(),
                int(time.time()))

    asyncio.run(_serve(args.port, logger))


if __name__ == '__main__':
    main()

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
                                                  [email=...]
         pays the session with a PaymentIntent made by localstripe's own classes and emits a
         signed `checkout.session.completed` event through localstripe's webhooks
    GET  /_test/checkout/{id}    the session's `url`: a stand-in for Stripe's hosted Checkout
                                 page (self-contained HTML, no API key needed) with a form of
                                 test cards (`select#payment_method`), an optional e-mail
                                 (`input#email`) and `button#pay`
    POST /_test/checkout/{id}    that form: pays the session exactly like .../complete (a 3-D
                                 Secure challenge passes), then `303 See Other` to its
                                 `success_url` ({CHECKOUT_SESSION_ID} replaced); a declined
                                 card re-renders the page (HTTP 402) with `#error`, session open
- Records, for tests only (both kept in memory, oldest first):
    GET    /_test/requests   every request to /v1/*: method, path, query, idempotency_key
                             (the Idempotency-Key header, null if absent), user_agent, the
                             form's metadata[payment_id] (null if none), and the answer's
                             status and object id
    GET    /_test/webhooks   every webhook delivery attempt: webhook (its id at
                             /_config/webhooks/{id}), event, type, object (the event's object
                             id), payment_id (its metadata's), status (null when the receiver
                             could not be reached) and error
    DELETE /_test/requests   forgets both records (with DELETE /_config/data: a clean slate)
  localstripe ignores Idempotency-Key: these records are how tests see what the server sent.
- Adds Stripe's test payment methods pm_card_chargeDeclined (4000000000000002),
  pm_card_chargeDeclinedInsufficientFunds (4000000000009995) and pm_card_authenticationRequired
  (4000002760003184) to localstripe's own (pm_card_visa, pm_card_visa_chargeDeclined,
  pm_card_chargeCustomerFail). Cards that localstripe declines on attach (such as 4000000000000002)
  also decline a Checkout payment without a customer, as on Stripe.
- Prints `ready http://127.0.0.1:PORT` (flushed) once listening.
"""

import argparse
import asyncio
import hashlib
import hmac
import html
import json
import logging
import os
import pickle
import re
import socket
import sys
import time

import aiohttp
from aiohttp import web

from localstripe import resources, server, webhooks
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

# ---------------------------------------------------------------------------------------------
# More of Stripe's test payment methods (localstripe knows pm_card_visa,
# pm_card_visa_chargeDeclined and pm_card_chargeCustomerFail)
# ---------------------------------------------------------------------------------------------

_EXTRA_TEST_CARDS = {
    'pm_card_chargeDeclined': '4000000000000002',
    'pm_card_chargeDeclinedInsufficientFunds': '4000000000009995',
    'pm_card_authenticationRequired': '4000002760003184',
}
_localstripe_test_article = \
    PaymentMethod.__dict__['_try_get_canonical_test_article'].__func__


def _try_get_canonical_test_article(cls, id):
    number = _EXTRA_TEST_CARDS.get(id)
    if number is not None:
        return PaymentMethod(type='card', card=dict(
            number=number, exp_month='12', exp_year='2034', cvc='123'))
    return _localstripe_test_article(cls, id)


PaymentMethod._try_get_canonical_test_article = \
    classmethod(_try_get_canonical_test_article)

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
        self.customer_details = None
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
                      email=None, **kwargs):
        """Pays the session as its customer would on the hosted page."""
        if kwargs:
            raise _unexpected('', list(kwargs.keys()))
        if email is not None and (type(email) is not str or len(email) > 512
                                  or not re.match(r'^[^@\s]+@[^@\s]+$', email)):
            raise _bad('email', 'Invalid email address')
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
        if pm._attaching_is_declined():
            # Cards such as 4000000000000002 decline whether or not they are saved.
            raise UserError(402, 'Your card was declined.',
                            {'code': 'card_declined'})
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

        if email is None and obj.customer is not None:
            email = getattr(Customer._api_retrieve(obj.customer), 'email', None)
        obj.customer_details = {'email': email}
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


# Stripe's zero-decimal currencies (amounts in whole units).
_ZERO_DECIMAL = {'bif', 'clp', 'djf', 'gnf', 'jpy', 'kmf', 'krw', 'mga', 'pyg',
                 'rwf', 'ugx', 'vnd', 'vuv', 'xaf', 'xof', 'xpf'}

# The hosted page's test cards: (payment method, label); the first is the default.
_PAGE_CARDS = (
    ('pm_card_visa', 'Visa 4242 (succeeds)'),
    ('pm_card_chargeDeclined', 'Visa 0002 (declined)'),
    ('pm_card_chargeDeclinedInsufficientFunds',
     'Visa 9995 (declined: insufficient funds)'),
    ('pm_card_chargeCustomerFail', 'Visa 0341 (saved, then the charge is declined)'),
    ('pm_card_authenticationRequired', 'Visa 3184 (3-D Secure, challenge passes)'),
)

_PAGE_STYLE = (
    'body{font-family:system-ui,sans-serif;margin:0;background:#f6f8fa;color:#1f2328}'
    'main{max-width:28rem;margin:2rem auto;padding:1.5rem;background:#fff;'
    'border:1px solid #d0d7de;border-radius:8px}'
    'h1{font-size:1.25rem;margin-top:0}#amount{font-size:2rem;font-weight:600;margin:.5rem 0}'
    'label{display:block;margin:1rem 0 .25rem;font-weight:600}'
    'select,input{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}'
    'button{margin-top:1.25rem;width:100%;padding:.75rem;font-size:1rem;border:0;'
    'border-radius:6px;background:#635bff;color:#fff;cursor:pointer}'
    '#error{color:#b42318;background:#fef3f2;border:1px solid #fda29b;'
    'padding:.5rem;border-radius:6px}'
    '.muted{color:#656d76;font-size:.875rem}a{color:#635bff}'
    'code{overflow-wrap:anywhere}'
    '@media (max-width:480px){main{margin:0;border:0;border-radius:0}}'
)


def _format_amount(amount, currency):
    if currency in _ZERO_DECIMAL:
        return '%d %s' % (amount, currency.upper())
    return '%d.%02d %s' % (amount // 100, amount % 100, currency.upper())


def _render_page(obj, error=None, payment_method=None, email=None, status=200):
    e = html.escape
    amount = _format_amount(obj.amount_total, obj.currency)
    rows = ''.join('<li>%d &times; %s</li>' % (item['quantity'], e(item['name']))
                   for item in obj._line_items)
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<title>Checkout %s</title><style>%s</style></head><body><main>' % (
            e(obj.id), _PAGE_STYLE),
        '<h1>Test checkout</h1>',
        '<p id="amount" data-amount="%d" data-currency="%s">%s</p>' % (
            obj.amount_total, e(obj.currency), e(amount)),
        '<ul id="items">%s</ul>' % rows,
        '<p class="muted">Session <code id="session">%s</code>: status '
        '<b id="status">%s</b>, payment <b id="payment-status">%s</b>.</p>' % (
            e(obj.id), e(obj.status), e(obj.payment_status)),
    ]
    if error is not None:
        parts.append('<p id="error" role="alert">%s</p>' % e(error))
    if obj.status == 'open':
        selected = payment_method or _PAGE_CARDS[0][0]
        options = ''.join(
            '<option value="%s"%s>%s</option>' % (
                e(value), ' selected' if value == selected else '', e(label))
            for value, label in _PAGE_CARDS)
        parts.append(
            '<form id="checkout" method="post" action="%s">'
            '<label for="payment_method">Test card</label>'
            '<select id="payment_method" name="payment_method">%s</select>'
            '<label for="email">Card holder e-mail (optional)</label>'
            '<input id="email" name="email" type="email" autocomplete="email" '
            'value="%s">'
            '<button type="submit" id="pay">Pay</button></form>' % (
                e(obj.url), options, e(email or '')))
    if obj.cancel_url is not None and obj.status == 'open':
        parts.append('<p><a id="cancel" href="%s">Cancel and return</a></p>' %
                     e(obj.cancel_url))
    parts.append(
        '<p class="muted">A stand-in for Stripe Checkout (localstripe launcher). Tests can '
        'also pay with <code>POST /_test/checkout/sessions/%s/complete</code> and '
        '<code>payment_method=pm_card_visa</code>.</p>' % e(obj.id))
    parts.append('</main></body></html>\n')
    return web.Response(text=''.join(parts), content_type='text/html',
                        status=status,
                        headers={'Cache-Control': 'no-store'})


def _success_location(obj):
    return obj.success_url.replace('{CHECKOUT_SESSION_ID}', obj.id)


def _page_session(request):
    try:
        return CheckoutSession._api_retrieve(request.match_info['id'])
    except UserError:
        return None


async def _page(request):
    obj = _page_session(request)
    if obj is None:
        return web.Response(status=404, text='No such Checkout Session\n')
    return _render_page(obj)


async def _pay(request):
    """The hosted page's form: pays like the test-only completion, then redirects."""
    obj = _page_session(request)
    if obj is None:
        return web.Response(status=404, text='No such Checkout Session\n')
    form = await request.post()
    payment_method = form.get('payment_method') or _PAGE_CARDS[0][0]
    email = (form.get('email') or '').strip() or None
    if obj.status == 'complete':
        # A repeated submit (double click, reload): Stripe shows the result again.
        return web.Response(status=303,
                            headers={'Location': _success_location(obj)})
    if type(payment_method) is not str or \
            payment_method not in dict(_PAGE_CARDS):
        return _render_page(obj, 'Choose one of the test cards.', None, email, 400)
    try:
        CheckoutSession._api_complete(obj.id, payment_method=payment_method,
                                      three_d_secure='pass', email=email)
    except UserError as error:
        body = error.body.get('error', {})
        message = body.get('message') or 'The payment failed.'
        return _render_page(obj, message, payment_method, email,
                            error.code if 400 <= error.code < 500 else 400)
    return web.Response(status=303, headers={'Location': _success_location(obj)})


# The hosted page (`/_test/checkout/{id}`, not `.../sessions/{id}/complete`).
_PAGE_PATH = re.compile(r'^/_test/checkout/[^/]+$')


@web.middleware
async def _auth_middleware(request, handler):
    # The hosted page is opened, and its form posted, by browsers, which carry no API key.
    if request.method in ('GET', 'POST') and _PAGE_PATH.match(request.path):
        return await handler(request)
    return await server.auth_middleware(request, handler)


app = server.app
app.middlewares[app.middlewares.index(server.auth_middleware)] = \
    _auth_middleware
app.router.add_post('/_test/checkout/sessions/{id}/complete', _complete)
app.router.add_get('/_test/checkout/{id}', _page)
app.router.add_post('/_test/checkout/{id}', _pay)
app.router.add_post('/v1/checkout/sessions/{id}/expire',
                    server.api_extra(CheckoutSession._api_expire,
                                     '/v1/checkout/sessions/{id}/expire'))
for _method, _url, _func in (
        ('POST', '/v1/checkout/sessions', server.api_create),
        ('GET', '/v1/checkout/sessions/{id}', server.api_retrieve),
        ('GET', '/v1/checkout/sessions', server.api_list_all)):
    app.router.add_route(_method, _url, _func(CheckoutSession, _url))


# ---------------------------------------------------------------------------------------------
# Records of what was asked and delivered (test-only)
# ---------------------------------------------------------------------------------------------

_requests = []
_deliveries = []


def _metadata_payment_id(data):
    metadata = data.get('metadata') if isinstance(data, dict) else None
    value = metadata.get('payment_id') if isinstance(metadata, dict) else None
    return value if isinstance(value, str) else None


@web.middleware
async def _record_middleware(request, handler):
    """Records every request to the API (/v1/*), its Idempotency-Key and its answer."""
    if not request.path.startswith('/v1/'):
        return await handler(request)
    entry = {
        'method': request.method,
        'path': request.path,
        'query': request.query_string,
        'idempotency_key': request.headers.get('Idempotency-Key'),
        'user_agent': request.headers.get('User-Agent'),
        'payment_id': None,
        'status': None,
        'id': None,
    }
    if request.method == 'POST':
        try:
            entry['payment_id'] = _metadata_payment_id(
                await server.get_post_data(request, remove_auth=False))
        except Exception:  # an unreadable body is the handler's to refuse
            pass
    _requests.append(entry)
    try:
        response = await handler(request)
    except web.HTTPException as error:
        entry['status'] = error.status
        raise
    except Exception:
        entry['status'] = 500
        raise
    entry['status'] = response.status
    body = getattr(response, 'body', None)
    if isinstance(body, (bytes, bytearray)):
        try:
            answer = json.loads(body)
            if isinstance(answer, dict) and isinstance(answer.get('id'), str):
                entry['id'] = answer['id']
        except ValueError:
            pass
    return response


async def _send_webhook(event):
    """localstripe's own `_send_webhook` (same payload, signature and 1 s delay, once, no
    retries), recording each delivery attempt and its answer."""
    payload = json.dumps(event._export(), indent=2, sort_keys=True)
    payload = payload.encode('utf-8')
    signed_payload = b'%d.%s' % (event.created, payload)
    obj = event.data.get('object') or {}
    await asyncio.sleep(1)
    logger = logging.getLogger('aiohttp.access')
    for id, webhook in list(webhooks._webhooks.items()):
        if webhook.events is not None and event.type not in webhook.events:
            continue
        signature = hmac.new(webhook.secret.encode('utf-8'), signed_payload,
                             hashlib.sha256).hexdigest()
        headers = {
            'Content-Type': 'application/json; charset=utf-8',
            'Stripe-Signature': 't=%d,v1=%s' % (event.created, signature)}
        record = {'webhook': id, 'event': event.id, 'type': event.type,
                  'object': obj.get('id'),
                  'payment_id': _metadata_payment_id(obj),
                  'status': None, 'error': None}
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(webhook.url, data=payload,
                                        headers=headers) as r:
                    record['status'] = r.status
            logger.info('webhook "%s" %s to %s: %d', event.type, event.id, id,
                        record['status'])
        except aiohttp.ClientError as e:
            record['error'] = str(e) or type(e).__name__
            logger.info('webhook "%s" %s to %s failed: %s', event.type,
                        event.id, id, record['error'])
        _deliveries.append(record)


# `schedule_webhook` looks `_send_webhook` up in its module at each call.
webhooks._send_webhook = _send_webhook


async def _list_requests(request):
    return server.json_response(_requests)


async def _list_deliveries(request):
    return server.json_response(_deliveries)


async def _forget(request):
    del _requests[:]
    del _deliveries[:]
    return web.Response()


app.middlewares.insert(0, _record_middleware)
app.router.add_get('/_test/requests', _list_requests)
app.router.add_delete('/_test/requests', _forget)
app.router.add_get('/_test/webhooks', _list_deliveries)

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

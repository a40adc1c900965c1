"""``carve``: a C-contiguous view of part of a buffer, without reference counting.

Generated entry points cut every parameter and intermediate out of two flat
buffers (the arena and the workspace).  Written as ``buf[a:b].reshape(shape)``
each such view costs Numba an atomic increment and decrement of the buffer's
reference count (``NRT_incref``/``NRT_decref``) and, for ``reshape``, a call
into its C helper ``numba_attempt_nocopy_reshape``.  On the xor step that was
59 reference-count calls and 19 helper calls: about 0.7 of its 0.9 µs inside
one native call.  (An ordinary overload: with Numba's ``inline="always"`` the
entry points took longer to compile.)

``carve`` builds the array struct directly (data pointer + offset, literal
shape, C strides) with no memory-info owner.  That is safe because every view
lives only inside the entry point, while the caller holds the buffers it was
cut from; a view never escapes (entry points return scalars).  The range is
checked against the buffer (one compare), so a layout bug raises instead of
reading past the end.
"""

from numba import types
from numba.extending import intrinsic, overload
from numba.np.arrayobj import make_array, populate_array


def carve(buf, start, shape):
    """``buf.ravel()[start:start + prod(shape)].reshape(shape)`` (pure-Python path)."""
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    count = 1
    for d in dims:
        count *= d
    if start < 0 or count < 0 or start + count > buf.size:
        raise IndexError("carve: view outside its buffer")
    return buf.reshape(-1)[start:start + count].reshape(dims)


def _dims_type(shape):
    if isinstance(shape, types.Integer):
        return 1
    if isinstance(shape, types.BaseTuple) and all(isinstance(t, types.Integer) for t in shape):
        return len(shape)
    return None


@intrinsic
def _carve(typingctx, buf, start, shape):
    nd = _dims_type(shape)
    if not (isinstance(buf, types.Array) and buf.layout == "C") or nd is None:
        return None
    ret = types.Array(buf.dtype, nd, "C", readonly=not buf.mutable)
    sig = ret(buf, start, shape)

    def codegen(context, builder, signature, args):
        intp = context.get_value_type(types.intp)
        src = make_array(buf)(context, builder, value=args[0])
        if isinstance(shape, types.Integer):
            dims = [context.cast(builder, args[2], shape, types.intp)]
        else:
            dims = [context.cast(builder, builder.extract_value(args[2], i), shape[i], types.intp)
                    for i in range(nd)]
        itemsize = context.get_abi_sizeof(context.get_data_type(buf.dtype))
        strides, step = [], intp(itemsize)
        for d in reversed(dims):
            strides.append(step)
            step = builder.mul(step, d)
        strides.reverse()
        data = builder.gep(src.data, [context.cast(builder, args[1], signature.args[1], types.intp)])
        out = make_array(ret)(context, builder)
        populate_array(out, data=data, shape=dims, strides=strides, itemsize=intp(itemsize),
                       meminfo=None)
        return out._getvalue()

    return sig, codegen


@intrinsic
def _count(typingctx, shape):
    """The product of a tuple of integers (any mix of integer types)."""
    if _dims_type(shape) is None or isinstance(shape, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        acc = context.get_constant(types.intp, 1)
        for i, t in enumerate(shape):
            d = context.cast(builder, builder.extract_value(args[0], i), t, types.intp)
            acc = builder.mul(acc, d)
        return acc

    return types.intp(shape), codegen


@overload(carve)
def _carve_ol(buf, start, shape):
    if _dims_type(shape) is None or not isinstance(buf, types.Array) or buf.layout != "C":
        return None
    if isinstance(shape, types.Integer):
        def impl(buf, start, shape):
            if start < 0 or shape < 0 or start + shape > buf.size:
                raise IndexError("carve: view outside its buffer")
            return _carve(buf, start, shape)

        return impl

    def impl(buf, start, shape):
        count = _count(shape)
        if start < 0 or count < 0 or start + count > buf.size:
            raise IndexError("carve: view outside its buffer")
        return _carve(buf, start, shape)

    return impl

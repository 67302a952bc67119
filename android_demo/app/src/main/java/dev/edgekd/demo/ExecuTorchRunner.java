package dev.edgekd.demo;

import dev.edgekd.core.Tensor;
import java.io.File;
import org.pytorch.executorch.DType;
import org.pytorch.executorch.EValue;
import org.pytorch.executorch.Module;

/** A .pte file on ExecuTorch's Android runtime (XNNPACK kernels are in the AAR). */
final class ExecuTorchRunner implements ModelRunner {
    private final Module module;

    ExecuTorchRunner(File pte) {
        module = Module.load(pte.getAbsolutePath());
    }

    @Override
    public Tensor run(Tensor input) {
        org.pytorch.executorch.Tensor in;
        if (input.floats != null) {
            in = org.pytorch.executorch.Tensor.fromBlob(input.floats, input.shape);
        } else if (input.dtype.equals("uint8")) {
            in = org.pytorch.executorch.Tensor.fromBlobUnsigned(input.bytes, input.shape);
        } else {
            in = org.pytorch.executorch.Tensor.fromBlob(input.bytes, input.shape);
        }
        EValue[] outs = module.forward(EValue.from(in));
        org.pytorch.executorch.Tensor out = outs[0].toTensor();
        DType dt = out.dtype();
        if (dt == DType.FLOAT) {
            return Tensor.ofFloats(out.shape(), out.getDataAsFloatArray());
        }
        if (dt == DType.INT8) {
            return Tensor.ofBytes(out.shape(), "int8", out.getDataAsByteArray());
        }
        if (dt == DType.UINT8) {
            return Tensor.ofBytes(out.shape(), "uint8", out.getDataAsUnsignedByteArray());
        }
        throw new IllegalStateException("the .pte returned a " + dt + " tensor; expected float32 or int8 logits");
    }

    @Override
    public String runtime() {
        return "executorch-android " + BuildConfig.EXECUTORCH_VERSION;
    }

    @Override
    public void close() {
        module.destroy();
    }
}

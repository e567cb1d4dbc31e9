"""The linear SVMs on VCCA's codes by which Wang et al. measure it (the task vcca's test numbers): a
one-vs-rest LinearSVC on standardised codes, and the one-vs-one SVC of their own code, each with its C tuned
on the validation set. On the host; needs scikit-learn (gvae[eval])."""


# The SVM's regularisation C tried on the validation set, as the VCCA paper tunes it.
SVM_C = (0.01, 0.1, 1.0, 10.0)
# The C that Wang et al.'s own code tries for its one-vs-one SVM.
PAIRWISE_SVM_C = (0.1, 1.0, 10.0)


def linear_svm_error(train, valid, test, cs=SVM_C):
    """The test error of a linear SVM on codes, as Wang et al. measure VCCA: each of ``train``, ``valid``,
    ``test`` is (codes (N, D), labels (N,)) on the host. The codes are standardised by the training set's
    mean and deviation, one-vs-rest linear SVMs (scikit-learn's LinearSVC, squared hinge, primal) are fitted
    on the training set for each C of ``cs``, and the C with the lowest validation error is tested.
    Returns {"svm_test_error", "svm_valid_error", "svm_c"} as floats. Needs scikit-learn (gvae[eval])."""
    from sklearn.svm import LinearSVC

    mean, scale = train[0].mean(axis=0), train[0].std(axis=0) + 1e-12
    norm = [((codes - mean) / scale, labels) for codes, labels in (train, valid, test)]
    return _tuned("svm", lambda c: LinearSVC(C=c, dual=False, max_iter=5000), norm, cs)


def pairwise_svm_error(train, valid, test, cs=PAIRWISE_SVM_C):
    """The test error of the linear SVM of Wang et al.'s own VCCA code, on the same sets as
    :func:`linear_svm_error`: scikit-learn's SVC with a linear kernel (libsvm: one classifier per pair of
    classes, 45 for 10, and their majority vote; hinge loss, dual) on the raw codes, for each C of ``cs``,
    the C with the lowest validation error tested. Its regions are intersections of the pairs' half-spaces,
    which one-vs-rest's ten hyperplanes cannot always draw. Returns {"svm_ovo_test_error",
    "svm_ovo_valid_error", "svm_ovo_c"} as floats. Needs scikit-learn (gvae[eval])."""
    from sklearn.svm import SVC

    return _tuned("svm_ovo", lambda c: SVC(C=c, kernel="linear"), (train, valid, test), cs)


def _tuned(name, make, sets, cs):
    """Fit ``make(c)`` on sets[0] for each c of ``cs``; test the one with the lowest error on sets[1]."""
    train, valid, test = sets
    best = None
    for c in cs:
        svm = make(c).fit(*train)
        error = float((svm.predict(valid[0]) != valid[1]).mean())
        if best is None or error < best[0]:
            best = (error, c, svm)
    error, c, svm = best
    return {f"{name}_test_error": float((svm.predict(test[0]) != test[1]).mean()), f"{name}_valid_error": error,
            f"{name}_c": c}

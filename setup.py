"""Install ``mmdet_detrdistill``: an MMDetection 3.x plugin for DETR distillation."""

from setuptools import find_packages, setup

setup(
    name='mmdet_detrdistill',
    version='0.1.0',
    description='Knowledge distillation for DETR-family detectors '
    '(D3ETR, DETRDistill, OD-DETR) as an MMDetection 3.x plugin',
    packages=find_packages(include=['mmdet_detrdistill', 'mmdet_detrdistill.*']),
    python_requires='>=3.9',
    # The OpenMMLab stack is pinned by requirements.txt / tools/install.sh:
    # mmcv must be built from source with ops, which pip cannot express.
    install_requires=['scipy', 'pycocotools'],
    license='Apache-2.0',
)
